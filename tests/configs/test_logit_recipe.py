"""The ImageNet configs of the logit family train what the code behind each
paper row trained, value by value.

- KD and DKD, ResNet-34 -> ResNet-18: the DKD authors' code
  (megvii-research/mdistiller, configs/imagenet/r34_r18/{kd,dkd}.yaml with
  its trainer, data and models), whose README gives the KD row (71.03) and
  the DKD row (71.70).
- NKD, ResNet-34 -> ResNet-18 and DeiT III-S -> DeiT-Ti: the NKD authors'
  code (yzd-v/cls_KD, master: mmcls 0.x), res34_distill_res18_img.py and
  deit-s3_distill_deit-t_img.py with the ViTKD switch off (the DeiT recipe
  facts are ViTKD's, shared with tests/configs/test_vitkd_recipe.py).
- DeiT's distillation token, RegNetY-16GF -> DeiT-Ti: facebookresearch/
  deit's main.py defaults with README_deit.md's command, on timm 0.3.2.

FACTS holds every training-relevant value with the file and line that set
it; DELIBERATE the few values we keep on purpose, each listed in the
method's README, "Differences from the official code". Facts are read from
the resolved config (cls_kd.utils.recipe), from the lr the schedulers
produce and, for initialisation and weight decay, from the built student
(no teacher: tests/configs/test_all_configs.py builds the distillers).
"""
import importlib.util
import math
import os.path as osp

import pytest
import torch

from cls_kd.utils.recipe import recipe_facts, transform

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _load_vitkd_test():
    path = osp.join(ROOT, 'tests', 'configs', 'test_vitkd_recipe.py')
    spec = importlib.util.spec_from_file_location('vitkd_recipe', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


V = _load_vitkd_test()  # its helpers and the cls_KD DeiT recipe

MD = 'megvii-research/mdistiller@a08d46f'
CLS, MMCV = V.CLS, V.MMCV
DEIT = 'facebookresearch/deit@7e160fe'
TIMM = 'huggingface/pytorch-image-models@6504a42'  # timm 0.3.2
MAIN = f'{DEIT}:main.py'
LR_CURVE = ('timm: 5 warm-up epochs from 1e-6, cosine of epoch t over '
            '300 to 1e-5, per epoch')

KD = 'kd_resnet34_resnet18_8xb64_in1k.py'
DKD = 'dkd_resnet34_resnet18_8xb64_in1k.py'
NKD_R = 'nkd_resnet34_resnet18_8xb32_in1k.py'
NKD_D = 'nkd_deit3-small_deit-tiny_4xb256_in1k.py'
DEIT_HARD = 'deit_regnety-160_deit-tiny-distilled_4xb256_in1k.py'
DEIT_SOFT = 'deit-soft_regnety-160_deit-tiny-distilled_4xb256_in1k.py'
CONFIGS = [KD, DKD, NKD_R, NKD_D, DEIT_HARD, DEIT_SOFT]
README = {
    KD: 'kd', DKD: 'dkd', NKD_R: 'nkd', NKD_D: 'nkd', DEIT_HARD: 'deit',
    DEIT_SOFT: 'deit'
}

# ------------------------------------------------------------ KD and DKD
_YAML = f'{MD}:configs/imagenet/r34_r18'
_DATA = f'{MD}:mdistiller/dataset/imagenet.py'
_RESNET = f'{MD}:mdistiller/models/imagenet/resnet.py'
MDISTILLER = [
    ('optimizer.type', 'SGD', f'{_YAML}/{{yaml}}:22'),
    ('optimizer.lr', 0.2, f'{_YAML}/{{yaml}}:17'),
    ('optimizer.momentum', 0.9, f'{_YAML}/{{yaml}}:21'),
    ('optimizer.weight_decay', 1e-4, f'{_YAML}/{{yaml}}:20'),
    # One group: every student parameter at the same decay and lr.
    ('decay_exempt', {}, f'{MD}:mdistiller/engine/trainer.py:40-45'),
    ('lr_mult', {}, f'{MD}:mdistiller/engine/trainer.py:40-45'),
    ('grad_clip', None, f'{MD}:mdistiller/engine/trainer.py:167-169'),
    ('accumulation', 1, f'{MD}:mdistiller/engine/trainer.py:167-169'),
    ('warmup.epochs', 0, f'{MD}:mdistiller/engine/utils.py:72-79'),
    ('schedule.type', 'MultiStepLR', f'{MD}:mdistiller/engine/utils.py:73'),
    # Epochs count from 1 and decay once epoch > stage: epochs 31-60 of
    # theirs are mmengine's 30-59.
    ('schedule.milestones', [30, 60, 90], f'{_YAML}/{{yaml}}:18'),
    ('schedule.gamma', 0.1, f'{_YAML}/{{yaml}}:19'),
    ('epochs', 100, f'{_YAML}/{{yaml}}:16'),
    ('global_batch', 512, f'{_YAML}/{{yaml}}:15'),
    ('train.crop', (224, (0.08, 1.0), 'bilinear'), f'{_DATA}:72'),
    ('train.flip', 0.5, f'{_DATA}:73'),
    # torchvision transforms on PIL images.
    ('resize.backend', 'pillow', f'{_DATA}:72-85'),
    ('test.resize', (256, 'bilinear'), f'{_DATA}:84'),
    ('test.crop', 224, f'{_DATA}:85'),
    ('normalisation', ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375)),
     f'{_DATA}:93'),
    ('randaugment', None, f'{_DATA}:70-77'),
    ('random_erasing', 0.0, f'{_DATA}:70-77'),
    ('mixup', None, f'{_DATA}:70-77'),
    ('cutmix', None, f'{_DATA}:70-77'),
    ('head.loss', 'CrossEntropyLoss',
     f'{MD}:mdistiller/distillers/{{method}}.py:{{ce_line}}'),
    ('label_smoothing', 0.0,
     f'{MD}:mdistiller/distillers/{{method}}.py:{{ce_line}}'),
    ('ema', None, f'{MD}:mdistiller/engine/trainer.py:153-169'),
    # torch.nn.DataParallel: BatchNorm statistics per GPU.
    ('sync_bn', False, f'{MD}:tools/train.py:78'),
    ('student.backbone', 'ResNet', f'{_RESNET}:195-200'),
    ('student.depth', 18, f'{_RESNET}:200'),
    ('drop_path', 0.0, f'{_RESNET}:101-114'),
    ('dropout', 0.0, f'{_RESNET}:101-114'),
    # Conv: normal(0, sqrt(2 / (k * k * out))), BN 1 / 0, no zero-init of
    # the blocks' last BN, the classifier at PyTorch's default.
    ('student.init.conv', 'kaiming fan_out', f'{_RESNET}:116-119'),
    ('student.init.zero_residual', False, f'{_RESNET}:116-122'),
    ('student.init.fc', 'torch default', f'{_RESNET}:114'),
    ('teacher.model', 'resnet34', f'{_YAML}/{{yaml}}:12'),
    ('teacher.checkpoint',
     'https://download.pytorch.org/models/resnet34-333f7ec4.pth',
     f'{_RESNET}:13'),
    ('teacher.loads_torchvision_weights', True, f'{_RESNET}:211-213'),
    # Distiller.train() puts the teacher back in eval mode.
    ('teacher.train_mode', {'teacher': False},
     f'{MD}:mdistiller/distillers/_base.py:12-20'),
]
KD_FACTS = [
    ('student_loss_weight', 0.5, f'{_YAML}/kd.yaml:26'),
    ('loss.loss_kd.loss_weight', 0.5, f'{_YAML}/kd.yaml:27'),
    ('loss.loss_kd.temperature', 1.0, f'{_YAML}/kd.yaml:24'),
]
DKD_FACTS = [
    # CE_WEIGHT 1.0.
    ('student_loss_weight', None, f'{_YAML}/dkd.yaml:27'),
    ('loss.loss_dkd.alpha', 1.0, f'{MD}:mdistiller/engine/cfg.py:164'),
    ('loss.loss_dkd.beta', 0.5, f'{_YAML}/dkd.yaml:28'),
    ('loss.loss_dkd.temperature', 1.0, f'{_YAML}/dkd.yaml:29'),
    # WARMUP 1: the weight is min(epoch / 1, 1) with epochs counted from 1
    # (trainer.py:78), so 1 from the first step.
    ('loss.loss_dkd.weight_ramp', None, f'{_YAML}/dkd.yaml:30'),
]

# ----------------------------------------------------------- NKD, ResNet
_NKD_R = f'{CLS}:configs/distillers/imagenet/res34_distill_res18_img.py'
_SCHED = f'{CLS}:configs/_base_/schedules/imagenet_bs256.py'
_DATA32 = f'{CLS}:configs/_base_/datasets/imagenet_bs32.py'
_MMCLS_RESNET = f'{CLS}:mmcls/models/backbones/resnet.py'
NKD_RESNET = [
    ('optimizer.type', 'SGD', f'{_SCHED}:2'),
    ('optimizer.lr', 0.1, f'{_SCHED}:2'),
    ('optimizer.momentum', 0.9, f'{_SCHED}:2'),
    ('optimizer.weight_decay', 1e-4, f'{_SCHED}:2'),
    ('decay_exempt', {}, f'{_SCHED}:2'),
    ('lr_mult', {}, f'{_SCHED}:2'),
    ('grad_clip', None, f'{_SCHED}:3'),
    ('accumulation', 1, f'{_SCHED}:3'),
    ('warmup.epochs', 0, f'{_SCHED}:5'),
    ('schedule.type', 'MultiStepLR', f'{_SCHED}:5'),
    ('schedule.milestones', [30, 60, 90], f'{_SCHED}:5'),
    ('schedule.gamma', 0.1, f'{_SCHED}:5'),
    ('epochs', 100, f'{_SCHED}:6'),
    ('batch_per_gpu', 32, f'{_DATA32}:23'),
    ('global_batch', 256, f'{CLS}:nkd.md:13'),
    # mmcv's default backend (cv2), bilinear.
    ('train.crop', (224, (0.08, 1.0), 'bilinear'), f'{_DATA32}:7'),
    ('resize.backend', 'cv2', f'{_DATA32}:7-16'),
    ('train.flip', 0.5, f'{_DATA32}:8'),
    ('test.resize', (256, 'bilinear'), f'{_DATA32}:16'),
    ('test.crop', 224, f'{_DATA32}:17'),
    ('normalisation', ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375)),
     f'{_DATA32}:3-4'),
    ('randaugment', None, f'{_DATA32}:5-13'),
    ('random_erasing', 0.0, f'{_DATA32}:5-13'),
    ('mixup', None, f'{CLS}:configs/_base_/models/resnet18.py:1-16'),
    ('cutmix', None, f'{CLS}:configs/_base_/models/resnet18.py:1-16'),
    ('head.loss', 'CrossEntropyLoss',
     f'{CLS}:configs/_base_/models/resnet18.py:15'),
    ('label_smoothing', 0.0, f'{CLS}:configs/_base_/models/resnet18.py:15'),
    ('ema', None, f'{CLS}:configs/resnet/resnet18_8xb32_in1k.py:1-4'),
    ('sync_bn', False, f'{CLS}:configs/_base_/models/resnet18.py:4-9'),
    ('student.backbone', 'ResNet',
     f'{CLS}:configs/_base_/models/resnet18.py:5'),
    ('student.depth', 18, f'{CLS}:configs/_base_/models/resnet18.py:6'),
    ('drop_path', 0.0, f'{_MMCLS_RESNET}:480'),
    ('dropout', 0.0, f'{_MMCLS_RESNET}:480'),
    ('student.init.conv', 'kaiming fan_out', f'{_MMCLS_RESNET}:482'),
    ('student.init.zero_residual', True, f'{_MMCLS_RESNET}:480'),
    ('student.init.fc', 'normal 0.01',
     f'{CLS}:mmcls/models/heads/linear_head.py:24'),
    # resnet34_b32x8_imagenet.py: the deprecated name of this config.
    ('teacher.config', 'resnet34_8xb32_in1k.py', f'{_NKD_R}:82'),
    ('teacher.checkpoint',
     'https://download.openmmlab.com/mmclassification/v0/resnet/'
     'resnet34_8xb32_in1k_20210831-f257d4e6.pth', f'{_NKD_R}:21'),
    # teacher.eval() once at build, no train() override; mmcv's runner
    # calls model.train() every epoch: BatchNorm on batch statistics.
    ('teacher.train_mode', {'teacher': True},
     f'{MMCV}:mmcv/runner/epoch_based_runner.py:43'),
    ('student_loss_weight', None, f'{V.DISTILLER}:91-95'),
    ('losses', ('loss_nkd', ), f'{_NKD_R}:16'),
    ('loss.loss_nkd.temperature', 1.0, f'{_NKD_R}:64'),
    ('loss.loss_nkd.gamma', 1.5, f'{_NKD_R}:65'),
]

# ------------------------------------------------------------- NKD, DeiT
_NKD_D = f'{CLS}:configs/distillers/imagenet/deit-s3_distill_deit-t_img.py'
_VITKD_ONLY = ('taps', 'connectors', 'connector.', 'student.tap.',
               'loss.loss_vitkd', 'student.head_input')
NKD_DEIT = [(k, v, s.format(official='deit-s3_distill_deit-t_img.py'))
            for k, v, s in V.RECIPE if not k.startswith(_VITKD_ONLY)]
NKD_DEIT += V.PAIR_FACTS['tiny']
NKD_DEIT += [
    ('teacher.config', 'deit-small3_pt-4xb256_in1k.py', f'{_NKD_D}:74'),
    ('teacher.checkpoint',
     'deit3-small-p16_in21k-pre_3rdparty_in1k_20221009-dcd90827.pth',
     f'{V.CLS_V1}:configs/distillers/imagenet/'
     'deit-s3_distill_deit-t_img.py:24'),
    # The NKD row: the ViTKD switch off.
    ('losses', ('loss_nkd', ), f'{_NKD_D}:15-16'),
    ('loss.loss_nkd.temperature', 1.0, f'{_NKD_D}:56'),
    ('loss.loss_nkd.gamma', 1.0, f'{_NKD_D}:57'),
]

# --------------------------------------------------- DeiT distillation
# main.py's defaults: every DeiT run, the DearKD configs included
# (tests/configs/test_dearkd_recipe.py evaluates this table on them).
DEIT_RECIPE = [
    ('optimizer.type', 'AdamW', f'{MAIN}:56'),
    ('optimizer.eps', 1e-8, f'{MAIN}:58'),
    # --opt-betas None: torch's AdamW default.
    ('optimizer.betas', (0.9, 0.999), f'{MAIN}:60'),
    ('optimizer.weight_decay', 0.05, f'{MAIN}:66'),
    # --lr 5e-4 x batch 256 x 4 GPUs / 512 (main.py:350).
    ('optimizer.lr', 1e-3, f'{MAIN}:71'),
    ('lr_mult', {}, f'{TIMM}:timm/optim/optim_factory.py:31'),
    ('grad_clip', None, f'{MAIN}:62'),
    ('accumulation', 1, f'{DEIT}:engine.py:63-68'),
    # timm 0.3.2's CosineLRScheduler, stepped once an epoch (main.py:432):
    # epochs 0-4 linear from --warmup-lr 1e-6 towards the lr, then
    # min + (lr - min)(1 + cos(pi t / 300)) / 2, t not shifted by the
    # warm-up, --min-lr 1e-5; the lr of every iteration is compared.
    ('lr.curve', LR_CURVE, f'{MAIN}:69-86'),
    ('epochs', 300, f'{MAIN}:35'),
    ('global_batch', 1024, f'{DEIT}:README_deit.md:221'),
    ('repeated_aug', 3, f'{MAIN}:105-107'),
    ('randaugment', (2, 9, 0.5, 10), f'{MAIN}:98'),
    ('randaugment.policies', 'timm_increasing', f'{MAIN}:98'),
    ('randaugment.interpolation', 'bicubic', f'{MAIN}:102'),
    # timm applies colour jitter only without an auto-augment policy.
    ('color_jitter', None, f'{TIMM}:timm/data/transforms_factory.py:98'),
    ('random_erasing', 0.25, f'{MAIN}:118'),
    # 'pixel': per-pixel normal noise (mmpretrain's 'rand').
    ('random_erasing.mode', 'rand', f'{MAIN}:120'),
    ('train.crop', (224, (0.08, 1.0), 'bicubic'), f'{MAIN}:102'),
    ('train.flip', 0.5, f'{TIMM}:timm/data/transforms_factory.py:48'),
    ('test.resize', (256, 'bicubic'), f'{DEIT}:datasets.py:101-103'),
    ('test.crop', 224, f'{DEIT}:datasets.py:105'),
    ('normalisation', ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375)),
     f'{DEIT}:datasets.py:108'),
    ('mixup', 0.8, f'{MAIN}:128'),
    ('cutmix', 1.0, f'{MAIN}:130'),
    # --mixup-prob 1, --mixup-switch-prob 0.5: one of the two on every
    # batch, with equal chances.
    ('batch_augments.probs', None, f'{MAIN}:134-137'),
    ('label_smoothing', 0.1, f'{MAIN}:101'),
    ('head.use_sigmoid', False, f'{MAIN}:36'),
    ('dropout', 0.0, f'{MAIN}:44'),
    ('head.dropout', 0.0, f'{MAIN}:44'),
    ('drop_path', 0.1, f'{MAIN}:46'),
    ('sync_bn', False, f'{MAIN}:344-345'),
    ('ema', 0.99996, f'{MAIN}:49-52'),
    ('amp', True, f'{DEIT}:engine.py:46'),
]
DEIT_DISTILL = [
    # timm's add_weight_decay: 1-D parameters, biases and
    # no_weight_decay() = {pos_embed, cls_token}; the distillation token is
    # decayed.
    ('decay_exempt.params', '1-D, biases, pos_embed, cls_token',
     f'{TIMM}:timm/optim/optim_factory.py:31'),
    ('batch_per_gpu', 256, f'{DEIT}:README_deit.md:221'),
    ('student.init.cls_token', 0.02,
     f'{TIMM}:timm/models/vision_transformer.py:242'),
    ('student.init.ffn', 0.02,
     f'{TIMM}:timm/models/vision_transformer.py:245-249'),
    ('teacher.model', 'regnety_160', f'{MAIN}:142'),
    ('teacher.checkpoint',
     'https://dl.fbaipublicfiles.com/deit/regnety_160-a5fe301d.pth',
     f'{DEIT}:README_deit.md:241'),
    # teacher_model.eval() once; train_one_epoch's model.train() is the
    # student's only.
    ('teacher.train_mode', {'teacher': False}, f'{MAIN}:387'),
    # loss = base (1 - alpha) + distillation alpha, alpha 0.5.
    ('student_loss_weight', 0.5, f'{DEIT}:losses.py:69'),
    ('loss.loss_deit.loss_weight', 0.5, f'{MAIN}:146'),
    ('head.type', 'DeiTDistillHead', f'{DEIT}:models.py:51-59'),
]
DEIT_MODE = {
    DEIT_HARD: [('loss.loss_deit.mode', 'hard', f'{DEIT}:README_deit.md:241')
                ],
    DEIT_SOFT: [('loss.loss_deit.mode', 'soft', f'{MAIN}:145'),
                ('loss.loss_deit.temperature', 1.0, f'{MAIN}:147')],
}


def _fill(facts, **fields):
    return [(k, v, s.format(**fields)) for k, v, s in facts]


FACTS = [(KD, k, v, s) for k, v, s in _fill(
    MDISTILLER, yaml='kd.yaml', method='KD', ce_line=31) + KD_FACTS]
FACTS += [(DKD, k, v, s) for k, v, s in _fill(
    MDISTILLER, yaml='dkd.yaml', method='DKD', ce_line=71) + DKD_FACTS]
FACTS += [(NKD_R, k, v, s) for k, v, s in NKD_RESNET]
FACTS += [(NKD_D, k, v, s) for k, v, s in NKD_DEIT]
FACTS += [(c, k, v, s) for c in (DEIT_HARD, DEIT_SOFT)
          for k, v, s in DEIT_RECIPE + DEIT_DISTILL + DEIT_MODE[c]]

_DEIT_OURS = {
    'ema': (None, 'DeiT keeps an EMA copy but evaluates and reports the '
            'raw weights (main.py:447); the copy changes no number'),
    'amp': (False, 'fp16 autocast with a loss scaler is a launch option '
            'here (tools/train.py --amp: bfloat16), not a config value'),
}
DELIBERATE = {(c, k): v for c in (DEIT_HARD, DEIT_SOFT)
              for k, v in _DEIT_OURS.items()}


def _timm_rule(name, param, module):
    return (param.ndim == 1 or name.endswith('.bias')
            or name in ('backbone.pos_embed', 'backbone.cls_token'))


def timm_cosine(base_lr, epochs, epoch_len, warmup_epochs, warmup_lr,
                min_lr):
    """timm 0.3.2's CosineLRScheduler with t_in_epochs, no warm-up
    prefix, one cycle."""
    lrs = []
    for t in range(epochs):
        if t < warmup_epochs:
            lr = warmup_lr + t * (base_lr - warmup_lr) / warmup_epochs
        else:
            lr = min_lr + 0.5 * (base_lr - min_lr) * (
                1 + math.cos(math.pi * t / epochs))
        lrs += [lr] * epoch_len
    return lrs


def _resnet_structure(cfg, key):
    model = V.built_student(cfg)
    if key == 'student.init.zero_residual':
        norms = [block.norm2.weight for layer in (
            model.backbone.layer1, model.backbone.layer2,
            model.backbone.layer3, model.backbone.layer4) for block in layer]
        return all(not w.any() for w in norms)
    if key == 'student.init.fc':
        fc = model.head.fc
        if V.std_is(fc.weight, 0.01) and not fc.bias.any():
            return 'normal 0.01'
        bound = 1 / math.sqrt(fc.in_features)
        if fc.weight.abs().max() <= bound and V.std_is(
                fc.weight, bound / math.sqrt(3)):
            return 'torch default'
        return float(fc.weight.std())
    if key == 'student.init.conv':
        conv = model.backbone.conv1
        fan_out = conv.out_channels * conv.kernel_size[0] * \
            conv.kernel_size[1]
        return 'kaiming fan_out' if V.std_is(
            conv.weight, math.sqrt(2 / fan_out)) else float(conv.weight.std())
    raise KeyError(key)


def _torchvision_weights_load(cfg, tmp_path):
    """Our teacher model takes a state dict in torchvision's layout (random
    weights, saved like the published file)."""
    import torchvision

    from cls_kd.registry import MODELS
    from cls_kd.utils.checkpoint import load_model_weights
    torch.manual_seed(0)
    reference = torchvision.models.resnet34()
    path = str(tmp_path / 'resnet34.pth')
    torch.save(reference.state_dict(), path)
    teacher = MODELS.build(dict(cfg.model.teacher.config))
    load_model_weights(teacher, path)
    teacher.eval()
    reference.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        return torch.allclose(teacher(x, mode='tensor'), reference(x),
                              atol=1e-5)


def our_value(name, key, tmp_path):
    cfg = V.config(name)
    model = cfg.model
    student = model.get('student') or model
    if name == NKD_D:
        return V.our_value(name, key)
    facts = recipe_facts(cfg)
    if key in facts:
        return facts[key]
    if key in ('train.flip', 'normalisation', 'batch_augments.probs',
               'randaugment.policies', 'random_erasing.mode', 'losses',
               'teacher.checkpoint') or key.startswith('loss.'):
        if key.startswith('loss.') and key.count('.') == 2:
            _, loss, attr = key.split('.')
            if attr == 'weight_ramp':
                return model.losses[loss].get('warmup')
            return model.losses[loss][attr]
        if key == 'teacher.checkpoint':
            return model.teacher.checkpoint
        return V.our_value(name, key)
    if key == 'resize.backend':
        backends = {
            step.get('backend', 'cv2')
            for split in ('train', 'test')
            for kind in ('RandomResizedCrop', 'ResizeEdge')
            if (step := transform(cfg, kind, split)) is not None
        }
        return backends.pop() if len(backends) == 1 else backends
    if key == 'student.depth':
        return student.backbone.depth
    if key.startswith('student.init.') and 'ResNet' in student.backbone.type:
        return _resnet_structure(cfg, key)
    if key == 'student.init.cls_token':
        value = V.built_student(cfg).backbone.cls_token
        return 0.02 if V.std_is(value, 0.02) else float(value.abs().max())
    if key == 'student.init.ffn':
        return V.ffn_init(V.built_student(cfg).backbone.layers[0].ffn.layers[0]
                          [0])
    if key == 'teacher.model':
        return model.teacher.config.model_name
    if key == 'teacher.config':
        return osp.basename(model.teacher.config)
    if key == 'teacher.loads_torchvision_weights':
        return _torchvision_weights_load(cfg, tmp_path)
    if key == 'decay_exempt.params':
        gap = V.decay_exempt_params(cfg, _timm_rule)
        return gap or '1-D, biases, pos_embed, cls_token'
    if key == 'lr.curve':
        official = timm_cosine(1e-3, 300, 2, 5, 1e-6, 1e-5)
        gap = V.max_relative_gap(V.simulate_lr(cfg, 2), official)
        return LR_CURVE if gap < 1e-3 else gap
    if key == 'repeated_aug':
        sampler = cfg.train_dataloader.sampler
        return (sampler.get('num_repeats', 3)
                if sampler.type == 'RepeatAugSampler' else None)
    if key == 'randaugment.interpolation':
        return transform(cfg, 'RandAugment').hparams.get('interpolation')
    if key == 'color_jitter':
        step = transform(cfg, 'ColorJitter')
        return None if step is None else step.get('brightness')
    if key == 'amp':
        return 'Amp' in (cfg.optim_wrapper.get('type') or '')
    if key == 'head.type':
        return student.head.type
    raise KeyError(key)


@pytest.mark.parametrize('name,key,official,source', FACTS,
                         ids=[f'{c[:-3]}:{k}' for c, k, _, _ in FACTS])
def test_fact(name, key, official, source, tmp_path):
    ours = our_value(name, key, tmp_path)
    V.check_fact(ours, official, source, DELIBERATE, name, key)


def test_sources_are_pinned():
    repos = ('megvii-research/mdistiller', 'yzd-v/cls_KD',
             'open-mmlab/mmcv', 'facebookresearch/deit',
             'huggingface/pytorch-image-models')
    for _, _, _, source in FACTS:
        repo, rest = source.split('@')
        commit, path_line = rest.split(':', 1)
        assert repo in repos, source
        assert len(commit) == 7 and path_line.count(':') == 1, source
        assert '{' not in source, source


def test_every_difference_is_in_the_readme():
    for name, key in DELIBERATE:
        path = osp.join(ROOT, 'configs', README[name], 'README.md')
        with open(path) as f:
            text = f.read()
        section = text.split('## Differences from the official code')[1]
        section = section.split('\n## ')[0]
        assert f'`{key}`' in section, (name, key)


def test_the_lr_check_can_fail():
    """mmpretrain's DeiT schedule (20 warm-up epochs per iteration, cosine
    after them) is far from DeiT's."""
    import copy

    from mmengine.config import Config

    from cls_kd.utils import resolve_config_path
    cfg = copy.deepcopy(V.config(DEIT_HARD))
    cfg.param_scheduler = Config.fromfile(
        resolve_config_path('mmpretrain::deit/deit-tiny_4xb256_in1k.py')
    ).param_scheduler
    official = timm_cosine(1e-3, 300, 2, 5, 1e-6, 1e-5)
    assert V.max_relative_gap(V.simulate_lr(cfg, 2), official) > 0.1
