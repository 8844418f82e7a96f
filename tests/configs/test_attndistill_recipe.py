"""AttnDistill's ImageNet configs train what the authors' released scripts
train, and their linear probes evaluate as DINO's ``eval_linear.py``.

FACTS pins every training-relevant value of the official code, with the
file and line that sets it; DELIBERATE lists the few values we keep on
purpose, each named in the README's "Differences from the official code".
Structural facts (initialisation, which feature a tap reads, the projector,
the probe's read-out, the weight-decay groups) are checked on the built
student, projector and probe; the real-size teachers are built by
test_all_configs.py only.

Sources: wangkai930418/attndistill@5a5f4e9 (``A``) and
facebookresearch/dino@7c446df (``D``).
"""
import copy
import os.path as osp
import re

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmpretrain.models.backbones import VisionTransformer

import cls_kd
from cls_kd.registry import MODELS
from cls_kd.utils.recipe import recipe_facts, transform

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
A = 'wangkai930418/attndistill@5a5f4e9:'
D = 'facebookresearch/dino@7c446df:'

cls_kd.register_all_modules()

DINO_S8 = 'attndistill_dino-vit-small-p8_vit-small-p16_8xb128-accu4-800e_in1k'
MUGS_B16 = ('attndistill_mugs-vit-base-p16_vit-small-p16_8xb128-accu4-800e_'
            'in1k')
MUGS_S16 = ('attndistill_mugs-vit-small-p16_vit-tiny-p16_8xb128-accu4-800e_'
            'in1k')
DISTILL = (DINO_S8, MUGS_B16, MUGS_S16)
LINEAR_S = 'linear_vit-small-p16_8xb128-100e_in1k'
LINEAR_T = 'linear_vit-tiny-p16_8xb128-100e_in1k'
LINEAR = (LINEAR_S, LINEAR_T)
SCRIPT = {DINO_S8: 'dino_teacher.sh', MUGS_B16: 'mugs_teacher.sh',
          # No script for this row: mugs_teacher.sh with a ViT-T student.
          MUGS_S16: 'mugs_teacher.sh'}
_MEAN_STD = ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375))

# (config, fact, official value, source)
_COMMON = [
    ('optimizer.type', 'AdamW', 'dino_transfer.py:249'),
    ('optimizer.betas', (0.9, 0.95), 'dino_transfer.py:249'),
    ('optimizer.eps', 1e-8, 'dino_transfer.py:249 (torch default)'),
    ('optimizer.weight_decay', 0.05, '{script}:30'),
    # lr = blr * eff_batch / 256, blr 1.5e-4, eff_batch 4096.
    ('optimizer.lr', 1.5e-4 * 4096 / 256, 'dino_transfer.py:228-229'),
    # timm 0.3.2 add_weight_decay: 1-D parameters and *.bias, no skip list
    # (class token and position embedding are decayed).
    ('decay_exempt', {'bias': 0.0, '1-D': 0.0}, 'dino_transfer.py:242-244'),
    ('lr_mult', {}, 'dino_transfer.py:242-249'),
    ('grad_clip', None, 'engine/engine_dino_transfer.py:141-142'),
    ('batch_per_gpu', 128, '{script}:10'),
    # accum_iter = 4096 // (batch * GPUs): 4 on 8 GPUs.
    ('accumulation', 4, 'dino_transfer.py:222'),
    ('global_batch', 4096, 'dino_transfer.py:222,226'),
    ('epochs', 800, '{script}:11'),
    ('warmup.epochs', 40, '{script}:9'),
    ('warmup.start_factor', 0.0, 'util/lr_sched.py:5-6'),
    ('schedule.type', 'CosineAnnealingLR', 'util/lr_sched.py:8-9'),
    ('schedule.eta_min', 0.0, 'dino_transfer.py:53'),
    ('schedule.end', 800, '{script}:11'),
    ('schedule.per_iteration', True,
     'engine/engine_dino_transfer.py:57-59'),
    ('train.crop', (224, (0.2, 1.0), 'bicubic'), 'dino_transfer.py:157-158'),
    ('train.flip', 0.5, 'dino_transfer.py:159'),
    ('train.aspect_ratio', (3 / 4, 4 / 3), 'dino_transfer.py:157'),
    ('train.drop_last', True, 'dino_transfer.py:200'),
    ('train.labels', False, 'engine/engine_dino_transfer.py:52'),
    ('data.mean_std', _MEAN_STD, 'dino_transfer.py:161'),
    ('randaugment', None, 'dino_transfer.py:156-161'),
    ('random_erasing', 0.0, 'dino_transfer.py:156-161'),
    ('mixup', None, 'dino_transfer.py:156-161'),
    ('cutmix', None, 'dino_transfer.py:156-161'),
    ('ema', None, 'dino_transfer.py:259-268'),
    ('sync_bn', False, 'dino_transfer.py:237-239'),
    ('amp', ('float16', 'dynamic'),
     'engine/engine_dino_transfer.py:63; util/misc.py:268'),
    ('nonfinite_skip', True, 'engine/engine_dino_transfer.py:65-69,123-138'),
    # A NaN micro-batch is dropped on its own rank; training never stops.
    ('nonfinite_skip.scope', ('micro-batch', 'own rank', None),
     'engine/engine_dino_transfer.py:65-69,123-138'),
    ('teacher.train_mode', {'teacher': False},
     'util/misc.py:16-20; engine/engine_dino_transfer.py:21'),
    ('student.drop_path', 0.0, 'models/dino_vit_student.py:17'),
    ('student.dropout', 0.0, 'models/dino_vit_student.py:15'),
    ('student.type', 'DINOVisionTransformer',
     'models/dino_vit_student.py:74-85 (DINO init)'),
    ('student.patch_size', 16, 'models/dino_vit_student.py:180-206'),
    ('student.qkv_bias', True, 'models/dino_vit_student.py:176,184,205'),
    ('loss.loss_align.type', 'AttnDistillAlignLoss',
     'engine/engine_dino_transfer.py:32,78'),
    ('loss.loss_align.weight', 1.0, '{script}:4'),
    ('loss.loss_attn.type', 'AttnDistillAttentionLoss',
     'engine/engine_dino_transfer.py:82-114'),
    ('loss.loss_attn.weight', 0.1, '{script}:5'),
    ('attn.clamp', (1e-5, 0.996), 'engine/engine_dino_transfer.py:107-108'),
    ('proj.layers', 4, '{script}:7'),
    ('proj.hidden_ratio', 2, 'models/dino_vit_student.py:57-58'),
    ('taps.student_cls', 'layers.11',
     'models/dino_vit_student.py:128-139'),
    ('taps.student_attn', ('layers.11.attn', 'cls'),
     'models/trans_vit.py:97-100; models/dino_vit_student.py:129-130'),
    ('taps.teacher_cls', 'backbone.ln1',
     'models/dino_vit_teacher.py:118-120'),
    ('taps.teacher_attn', ('backbone.layers.11.attn', 'cls'),
     'models/dino_vit_teacher.py:112-114'),
    # k-NN as DINO's eval_knn.py (the paper's protocol).
    ('test.resize', (256, 'bicubic'), 'D eval_knn.py:33'),
    ('test.crop', 224, 'D eval_knn.py:34'),
    ('knn', (20, 0.07), 'D eval_knn.py:194-197'),
]
# (width, depth, heads, MLP width) of the official ViTs: vit_tiny / small /
# base (models/dino_vit_student.py:172-185, models/dino_vit_teacher.py:
# 158-189), named by mmpretrain's arch.
DIMS = {
    'deit-tiny': (192, 12, 3, 768),
    'deit-small': (384, 12, 6, 1536),
    'deit-base': (768, 12, 12, 3072),
}
_PAIRS = {
    # (student arch, teacher arch, teacher patch, projector widths,
    #  aggregation, resize, tau)
    DINO_S8: ('deit-small', 'deit-small', 8, (384, 384), False, True, None,
              'dino_teacher.sh:2-3,43,45'),
    MUGS_B16: ('deit-small', 'deit-base', 16, (384, 768), True, False, 10.0,
               'mugs_teacher.sh:2-3,14,43-45'),
    MUGS_S16: ('deit-tiny', 'deit-small', 16, (192, 384), True, False, 10.0,
               'mugs_teacher.sh:14,43-45; models/dino_vit_student.py:'
               '172-177'),
}
FACTS = []
for _cfg in DISTILL:
    for _key, _value, _src in _COMMON:
        _src = _src.format(script=SCRIPT[_cfg])
        FACTS.append((_cfg, _key, _value,
                      _src.replace('D ', D) if _src.startswith('D ') else
                      A + _src))
    (_s, _t, _tp, _widths, _agg, _resize, _tau, _src) = _PAIRS[_cfg]
    FACTS += [
        (_cfg, 'student.dims', DIMS[_s], A + _src),
        (_cfg, 'teacher.dims', DIMS[_t], A + _src),
        (_cfg, 'teacher.patch_size', _tp, A + _src),
        (_cfg, 'proj.widths', _widths, A + _src),
        (_cfg, 'attn.aggregate', _agg, A + _src),
        (_cfg, 'attn.resize', _resize, A + _src),
    ]
    if _tau is not None:  # dino_teacher.sh does not aggregate: no τ
        FACTS.append((_cfg, 'attn.tau', _tau, A + _src))

_PROBE = [
    ('probe.n_last_blocks', 4, 'eval_linear.py:256-257'),
    ('probe.avgpool_patchtokens', False, 'eval_linear.py:258-260'),
    ('probe.norm_each_block', True, 'vision_transformer.py:225-233'),
    ('probe.batchnorm', False, 'eval_linear.py:237-251'),
    ('probe.frozen_backbone', True, 'eval_linear.py:55,164-166'),
    ('probe.head_init_std', 0.01, 'eval_linear.py:243-244'),
    ('optimizer.type', 'SGD', 'eval_linear.py:103'),
    ('optimizer.lr', 0.001 * 1024 / 256, 'eval_linear.py:105,266,270'),
    ('optimizer.momentum', 0.9, 'eval_linear.py:106'),
    ('optimizer.weight_decay', 0.0, 'eval_linear.py:107'),
    ('optimizer.nesterov', False, 'eval_linear.py:103-108'),
    ('batch_per_gpu', 128, 'eval_linear.py:270'),
    ('global_batch', 1024, 'eval_linear.py:270; README.md:261-263'),
    ('val.batch_per_gpu', 128, 'eval_linear.py:72-74'),
    ('epochs', 100, 'eval_linear.py:265'),
    ('warmup.epochs', 0, 'eval_linear.py:109'),
    ('schedule.type', 'CosineAnnealingLR', 'eval_linear.py:109'),
    ('schedule.eta_min', 0.0, 'eval_linear.py:109'),
    ('schedule.end', 100, 'eval_linear.py:109'),
    ('schedule.per_iteration', False, 'eval_linear.py:127'),
    ('train.crop', (224, (0.08, 1.0), 'bilinear'), 'eval_linear.py:86'),
    ('train.aspect_ratio', (3 / 4, 4 / 3), 'eval_linear.py:86'),
    ('train.flip', 0.5, 'eval_linear.py:87'),
    ('data.mean_std', _MEAN_STD, 'eval_linear.py:69,89'),
    ('test.resize', (256, 'bicubic'), 'eval_linear.py:66'),
    ('test.crop', 224, 'eval_linear.py:67'),
    ('val_interval', 1, 'eval_linear.py:131,276'),
    ('report_best', True, 'eval_linear.py:134,150'),
    ('head.loss', 'CrossEntropyLoss', 'eval_linear.py:176'),
    ('grad_clip', None, 'eval_linear.py:179-183'),
    ('amp', None, 'eval_linear.py:163-183'),
    ('mixup', None, 'eval_linear.py:85-90'),
    ('cutmix', None, 'eval_linear.py:85-90'),
    ('random_erasing', 0.0, 'eval_linear.py:85-90'),
    ('ema', None, 'eval_linear.py:123-127'),
]
for _cfg in LINEAR:
    FACTS += [(_cfg, key, value, D + src) for key, value, src in _PROBE]
FACTS += [
    (LINEAR_S, 'probe.dims', (DIMS['deit-small'], 16), D + 'eval_linear.py'
     ':261-262'),
    (LINEAR_T, 'probe.dims', (DIMS['deit-tiny'], 16), A + 'models/'
     'dino_vit_student.py:172-177'),
]

DELIBERATE = {
    (cfg, 'warmup.start_factor'):
    (1e-4, "mmengine's LinearLR divides by its start factor; 0 is refused")
    for cfg in DISTILL
}
DELIBERATE.update({
    (cfg, 'nonfinite_skip.scope'):
    (('accumulation window', 'every rank', 20),
     'a DDP step cannot skip one micro-batch on one rank; a run of NaN '
     'steps stops instead of running on')
    for cfg in DISTILL
})

_CACHE = {}


def load(name: str) -> Config:
    if name not in _CACHE:
        _CACHE[name] = Config.fromfile(
            osp.join(ROOT, 'configs', 'attndistill', name + '.py'))
    return _CACHE[name]


def _plain(value):
    """Lists as tuples, recursively (configs may hold either)."""
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _scheduler(cfg, kind):
    return next(s for s in cfg.param_scheduler if s['type'] == kind)


def _amp(cfg):
    wrapper = cfg.optim_wrapper
    if 'Amp' not in wrapper.get('type', 'OptimWrapper'):
        return None
    return (wrapper.get('dtype'), wrapper.get('loss_scale', 'dynamic'))


def _taps(cfg, name):
    tap = cfg.model.taps[name]
    selector = tap['selector']
    if isinstance(selector, dict):
        return (tap['path'], selector['query'])
    return tap['path']


def _dims(arch):
    zoo = VisionTransformer.arch_zoo[arch]
    return (zoo['embed_dims'], zoo['num_layers'], zoo['num_heads'],
            zoo['feedforward_channels'])


def _grid(patch):
    return 224 // patch


def _probe_norm(cfg):
    # DINOVisionTransformer norms every requested block's output.
    return cfg.model.backbone.type == 'DINOVisionTransformer'


GETTERS = {
    'schedule.per_iteration':
    lambda c: all(s.get('convert_to_iter_based', False) or not s.get(
        'by_epoch', True) for s in c.param_scheduler),
    'train.flip':
    lambda c: transform(c, 'RandomFlip')['prob'],
    'train.aspect_ratio':
    lambda c: _plain(
        transform(c, 'RandomResizedCrop').get('aspect_ratio_range',
                                              (3 / 4, 4 / 3))),
    'train.drop_last':
    lambda c: c.train_dataloader.get('drop_last', False),
    'train.labels':
    lambda c: c.train_dataloader.dataset.get('with_label', True),
    'data.mean_std':
    lambda c: (_plain(c.data_preprocessor.mean),
               _plain(c.data_preprocessor.std)),
    'amp':
    _amp,
    'nonfinite_skip':
    lambda c: c.optim_wrapper.type.startswith('NonFiniteGuard') and c.
    optim_wrapper.get('skip_nonfinite', True),
    'nonfinite_skip.scope':
    lambda c: ('accumulation window', 'every rank',
               c.optim_wrapper.max_consecutive_skips),
    'student.type':
    lambda c: c.model.student.type,
    'student.dims':
    lambda c: _dims(c.model.student.arch),
    'student.qkv_bias':
    lambda c: c.model.student.get('qkv_bias', True),
    'optimizer.eps':
    lambda c: c.optim_wrapper.optimizer.get('eps', 1e-8),
    'student.patch_size':
    lambda c: c.model.student.patch_size,
    'student.drop_path':
    lambda c: c.model.student.get('drop_path_rate', 0.),
    'student.dropout':
    lambda c: c.model.student.get('drop_rate', 0.),
    'teacher.dims':
    lambda c: _dims(c.model.teacher.config.backbone.arch),
    'teacher.patch_size':
    lambda c: c.model.teacher.config.backbone.patch_size,
    'attn.clamp':
    lambda c: _plain(c.model.losses.loss_attn.clamp),
    'attn.tau':
    lambda c: c.model.losses.loss_attn.tau,
    'attn.aggregate':
    lambda c: c.model.losses.loss_attn.aggregate,
    # The loss resizes the teacher's row whenever the grids differ.
    'attn.resize':
    lambda c: _grid(c.model.teacher.config.backbone.patch_size) != _grid(
        c.model.student.patch_size),
    'proj.layers':
    lambda c: 4 if c.model.connectors.proj.type == 'AttnDistillProjector'
    else None,
    'proj.hidden_ratio':
    lambda c: c.model.connectors.proj.get('hidden_ratio', 2),
    'proj.widths':
    lambda c: (c.model.connectors.proj.in_channels,
               c.model.connectors.proj.out_channels),
    'taps.student_cls':
    lambda c: _taps(c, 's_cls'),
    'taps.student_attn':
    lambda c: _taps(c, 's_attn'),
    'taps.teacher_cls':
    lambda c: _taps(c, 't_cls'),
    'taps.teacher_attn':
    lambda c: _taps(c, 't_attn'),
    'knn':
    lambda c: (c.val_evaluator[0].k, c.val_evaluator[0].temperature),
    'probe.dims':
    lambda c: (_dims(c.model.backbone.arch), c.model.backbone.patch_size),
    'probe.n_last_blocks':
    lambda c: len(c.model.backbone.out_indices)
    if tuple(c.model.backbone.out_indices) == tuple(
        range(12 - len(c.model.backbone.out_indices), 12)) else None,
    'probe.avgpool_patchtokens':
    lambda c: c.model.head.get('avgpool_patchtokens', False),
    'probe.norm_each_block':
    _probe_norm,
    'probe.batchnorm':
    lambda c: c.model.get('neck') is not None or 'BN' in str(c.model.head),
    'probe.frozen_backbone':
    lambda c: c.model.backbone.frozen_stages == 12,
    'probe.head_init_std':
    lambda c: c.model.head.init_cfg.std
    if c.model.head.init_cfg.type == 'Normal' else None,
    'optimizer.nesterov':
    lambda c: c.optim_wrapper.optimizer.get('nesterov', False),
    'val.batch_per_gpu':
    lambda c: c.val_dataloader.batch_size,
    'val_interval':
    lambda c: c.train_cfg.val_interval,
    'report_best':
    lambda c: c.default_hooks.checkpoint.get('save_best') == 'accuracy/top1',
}


def fact(config: str, key: str):
    cfg = load(config)
    if key in GETTERS:
        return _plain(GETTERS[key](cfg))
    facts = recipe_facts(cfg)
    assert key in facts, f'unknown fact {key!r}'
    return _plain(facts[key])


def test_facts_cover_every_config_and_cite_a_line():
    configs = {c for c, *_ in FACTS}
    assert configs == set(DISTILL) | set(LINEAR)
    for config, key, _, source in FACTS:
        assert re.search(r'@[0-9a-f]{7}:\S+:\d', source), (config, key)
    # A deliberate difference replaces an official value, never adds one.
    official = {(c, k) for c, k, *_ in FACTS}
    assert set(DELIBERATE) <= official


@pytest.mark.parametrize('config, key, official, source', FACTS,
                         ids=[f'{c[:30]}-{k}' for c, k, *_ in FACTS])
def test_fact(config, key, official, source):
    if (config, key) in DELIBERATE:
        ours, _ = DELIBERATE[(config, key)]
        assert fact(config, key) == pytest.approx(ours), source
        assert fact(config, key) != official
        return
    value = fact(config, key)
    if isinstance(official, float):
        assert value == pytest.approx(official, rel=1e-12), source
    else:
        assert value == official, source


@pytest.mark.parametrize('config, key', sorted(DELIBERATE))
def test_deliberate_differences_are_listed_in_the_readme(config, key):
    assert fact(config, key) == DELIBERATE[(config, key)][0]
    with open(osp.join(ROOT, 'configs', 'attndistill', 'README.md')) as f:
        readme = f.read()
    section = readme.split('## Differences from the official code')[1]
    section = section.split('\n## ')[0]
    assert f'`{key}`' in section, key


# --- the built student, projector and probe -------------------------------

_STUDENTS = {}


def built_student(config: str):
    spec = load(config).model.student
    key = repr(spec)
    if key not in _STUDENTS:
        torch.manual_seed(0)
        student = MODELS.build(copy.deepcopy(spec))
        student.init_weights()
        _STUDENTS[key] = student
    return _STUDENTS[key]


@pytest.mark.parametrize('config', [DINO_S8, MUGS_S16])
def test_student_is_initialised_as_dino(config):
    """models/dino_vit_student.py:74-85 (= DINO's vision_transformer.py
    161-172): trunc-normal(0.02) Linear weights with zero bias, LayerNorm
    1 / 0, trunc-normal(0.02) class token and position embedding; the patch
    convolution left at PyTorch's default."""
    student = built_student(config)
    width = student.embed_dims
    linears = [m for m in student.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 4 * 12
    weights = torch.cat([m.weight.flatten() for m in linears])
    assert weights.std().item() == pytest.approx(0.02, rel=0.01)
    assert abs(weights.mean().item()) < 2e-4
    for m in linears:
        # Each matrix alone (the smallest has width² entries): not Xavier
        # (0.032 to 0.044) nor PyTorch's default (~1 / sqrt(3 · fan_in)).
        assert m.weight.std().item() == pytest.approx(0.02, rel=0.05)
        assert torch.count_nonzero(m.bias) == 0
    norms = [m for m in student.modules() if isinstance(m, nn.LayerNorm)]
    assert len(norms) == 2 * 12 + 1
    assert all((m.weight == 1).all() and (m.bias == 0).all() for m in norms)
    assert all(m.eps == 1e-6 for m in norms)  # dino_vit_student.py:184
    pos = student.pos_embed
    assert pos.shape == (1, 197, width)
    assert pos.std().item() == pytest.approx(0.02, rel=0.02)
    cls = student.cls_token
    assert cls.abs().max() > 0  # mmpretrain would leave it at zero
    assert cls.std().item() == pytest.approx(0.02, rel=0.2)
    conv = student.patch_embed.projection
    bound = (3 * 16 * 16)**-0.5  # kaiming_uniform(a=√5): 1/sqrt(fan_in)
    assert conv.weight.abs().max() <= bound
    assert conv.weight.std().item() == pytest.approx(bound / 3**0.5,
                                                     rel=0.02)
    assert conv.bias.abs().max() <= bound and conv.bias.abs().max() > 0


@pytest.mark.parametrize('config', DISTILL)
def test_student_taps_read_the_last_block_before_the_norm(config):
    """The projector reads the last block's tokens before any norm and the
    attention of the last block (dino_vit_student.py:128-139)."""
    cfg = load(config)
    student = built_student(config)
    modules = dict(student.named_modules())
    s_cls, s_attn = cfg.model.taps.s_cls.path, cfg.model.taps.s_attn.path
    assert s_cls == f'layers.{len(student.layers) - 1}'
    assert s_attn == s_cls + '.attn' and s_attn in modules
    seen = {}
    hook = modules[s_cls].register_forward_hook(
        lambda m, i, o: seen.setdefault('x', o))
    with torch.no_grad():
        out = student(torch.randn(1, 3, 224, 224))[-1]
    hook.remove()
    torch.testing.assert_close(out, student.ln1(seen['x'])[:, 0])
    assert not torch.allclose(out, seen['x'][:, 0])
    last = student.layers[-1]
    dims = (student.embed_dims, len(student.layers), last.attn.num_heads,
            last.ffn.feedforward_channels)
    assert dims == DIMS[cfg.model.student.arch]


def _loss_tests():
    """tests/models/losses/test_attn_distill.py, for its transcription of
    the official attention term and its row makers."""
    import importlib.util
    path = osp.join(ROOT, 'tests', 'models', 'losses',
                    'test_attn_distill.py')
    spec = importlib.util.spec_from_file_location('attn_loss_tests', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('config', DISTILL)
@pytest.mark.parametrize('kind', ['smooth', 'peaky'])
def test_attention_loss_of_the_config_is_the_official_one(config, kind):
    """The configured loss on rows of the pair's real shapes equals the
    official term run with the script's flags (--interpolate /
    --aggregation --attn_T), times its weight."""
    ref = _loss_tests()
    cfg = load(config)
    s_arch, t_arch, t_patch, _, aggregation, interpolate, tau, _ = _PAIRS[
        config]
    attn_s = ref.rows(2, DIMS[s_arch][2], 1 + 14 * 14, seed=40)
    attn_t = ref.teacher_rows((2, DIMS[t_arch][2], 1 + _grid(t_patch)**2),
                              kind, seed=41)
    spec = copy.deepcopy(cfg.model.losses.loss_attn)
    spec.pop('inputs')  # read by the distiller
    loss = MODELS.build(spec)
    expected = 0.1 * ref.official_attention_loss(
        attn_s, attn_t, interpolate, aggregation, attn_T=tau or 20.0)
    assert loss(attn_s, attn_t).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize('config', [DINO_S8, MUGS_B16])
def test_projector_is_the_official_one(config):
    """mlp.get_mlp_student(hidden_dims, 4) + the student's norm
    (models/mlp.py:10-20, models/dino_vit_student.py:57-67)."""
    cfg = load(config)
    proj = MODELS.build(copy.deepcopy(cfg.model.connectors.proj))
    d, d_t = cfg.model.connectors.proj.in_channels, \
        cfg.model.connectors.proj.out_channels
    shapes = [(type(m).__name__, getattr(m, 'in_features', None),
               getattr(m, 'out_features', None),
               getattr(m, 'normalized_shape', None),
               getattr(m, 'eps', None)) for m in proj.layers]
    assert shapes == [
        ('LayerNorm', None, None, (d, ), 1e-6),
        ('Linear', d, 2 * d, None, None), ('GELU', None, None, None, None),
        ('Linear', 2 * d, d, None, None), ('GELU', None, None, None, None),
        ('Linear', d, 2 * d, None, None), ('GELU', None, None, None, None),
        ('Linear', 2 * d, d_t, None, None),
        ('LayerNorm', None, None, (d_t, ), 1e-6),
    ]


def test_weight_decay_groups_are_the_official_ones():
    """timm 0.3.2 add_weight_decay (dino_transfer.py:242-244): no decay for
    1-D parameters and biases, decay for everything else, class token and
    position embedding included."""
    cfg = load(DINO_S8)
    model = nn.ModuleDict(
        dict(student=built_student(DINO_S8),
             proj=MODELS.build(copy.deepcopy(cfg.model.connectors.proj))))
    wrapper = copy.deepcopy(cfg.optim_wrapper)
    for key in ('dtype', 'loss_scale', 'max_consecutive_skips',
                'accumulative_counts'):
        wrapper.pop(key, None)
    wrapper['type'] = 'OptimWrapper'
    optim = build_optim_wrapper(model, wrapper)
    decay = {}
    for group in optim.optimizer.param_groups:
        for p in group['params']:
            decay[id(p)] = group['weight_decay']
    for name, p in model.named_parameters():
        official = 0.0 if p.dim() == 1 or name.endswith('.bias') else 0.05
        assert decay[id(p)] == official, name
    assert decay[id(model.student.cls_token)] == 0.05
    assert decay[id(model.student.pos_embed)] == 0.05


@pytest.mark.parametrize('config', LINEAR)
def test_probe_reads_dino_features(config):
    """eval_linear.py:164-173: the class tokens of the last 4 blocks, each
    through the final norm (vision_transformer.py:225-233), concatenated,
    into one Linear; only that Linear trains."""
    cfg = copy.deepcopy(load(config))
    cfg.model.backbone.init_cfg = None  # no checkpoint here
    torch.manual_seed(0)
    probe = MODELS.build(cfg.model)
    probe.init_weights()
    backbone = probe.backbone
    x = torch.randn(2, 3, 224, 224)
    blocks = {}
    hooks = [
        backbone.layers[i].register_forward_hook(
            lambda m, inp, out, i=i: blocks.setdefault(i, out))
        for i in range(8, 12)
    ]
    with torch.no_grad():
        feats = probe.extract_feat(x)
        logits = probe(x, mode='tensor')
    for h in hooks:
        h.remove()
    expected = torch.cat([backbone.ln1(blocks[i])[:, 0] for i in range(8, 12)],
                         dim=-1)
    torch.testing.assert_close(probe.head.pre_logits(feats), expected)
    torch.testing.assert_close(logits, probe.head.fc(expected))
    trainable = [n for n, p in probe.named_parameters() if p.requires_grad]
    assert trainable == ['head.fc.weight', 'head.fc.bias']
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                   for m in probe.modules())
    assert probe.head.fc.weight.std().item() == pytest.approx(0.01,
                                                              rel=0.05)
    assert torch.count_nonzero(probe.head.fc.bias) == 0


def test_the_distiller_initialises_its_student_as_dino():
    """The Runner's model.init_weights() reaches the student: checked on the
    small digits frame with the paper configs' student class."""
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs', 'attndistill',
                 'attndistill_vit-4x64-p8_vit-4x32-p8_1xb64_digits.py'))
    cfg.model.student.type = load(DINO_S8).model.student.type
    cfg.model.teacher.update(checkpoint=None, random_init=True)
    cfg.model.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    assert torch.count_nonzero(model.student.cls_token) == 0  # mmpretrain's
    model.init_weights()
    student = model.student
    assert torch.count_nonzero(student.cls_token) == student.embed_dims
    for m in student.modules():
        if isinstance(m, nn.Linear):
            assert torch.count_nonzero(m.bias) == 0
            assert m.weight.abs().max() < 0.1
