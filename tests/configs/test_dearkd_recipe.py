"""DearKD's ImageNet configs train at DeiT's recipe, value by value.

DearKD has no official code; the paper trains its students "following
DeiT". The recipe is therefore the DeiT code that produced DeiT's rows:
facebookresearch/deit's main.py defaults with the commands of its
README_deit.md, on timm 0.3.2 (its requirements.txt). FACTS holds every
training-relevant value of that code, with the line that sets it; DELIBERATE
the few values we keep on purpose (each listed in configs/dearkd/README.md,
"Differences from DeiT's code"). The DearKD parts (MHCA, taps, aligners,
stages, synthesis) have no official value: tests/configs/
test_dearkd_configs.py pins them against the README's table of choices.

Facts are read from the resolved config (cls_kd.utils.recipe) or, for the
architecture and initialisation, from the built student (no teacher)."""
import importlib.util
import os.path as osp

import pytest
import torch
from mmengine.config import Config

import cls_kd
from cls_kd.registry import MODELS
from cls_kd.utils.recipe import recipe_facts, transform

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
README = osp.join(ROOT, 'configs', 'dearkd', 'README.md')
DEIT = 'facebookresearch/deit@7e160fe'
TIMM = 'huggingface/pytorch-image-models@6504a42'  # timm 0.3.2
MAIN = f'{DEIT}:main.py'

cls_kd.register_all_modules()


def _load(test):
    path = osp.join(ROOT, 'tests', 'configs', test)
    spec = importlib.util.spec_from_file_location(test[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The shared recipe helpers: mmengine's schedulers stepped as the runner
# steps them (V.simulate_lr), timm's cosine (L.timm_cosine).
V = _load('test_vitkd_recipe.py')
L = _load('test_logit_recipe.py')

TI = 'dearkd_regnety-160_deit-tiny_4xb256_in1k.py'
S = 'dearkd_regnety-160_deit-small_4xb256_in1k.py'
B = 'dearkd_regnety-160_deit-base_16xb64_in1k.py'
MHCA = 'mhca_deit-tiny_4xb256_in1k.py'
# DearKD-Ti on other training images: the same recipe.
TI_DATA = [
    'dearkd_regnety-160_deit-tiny_4xb256_in1k-10pct.py',
    'dearkd_regnety-160_deit-tiny_4xb256_in1k-25pct.py',
    'dearkd_regnety-160_deit-tiny_4xb256_in1k-50pct.py',
    'dearkd_regnety-160_deit-tiny_4xb256_datafree.py',
    'dearkd_regnety-160_deit-tiny_4xb256_datafree-deepinversion.py',
    'dearkd_regnety-160_deit-tiny_4xb256_datafree-adi.py',
]
DISTILLED = [TI, S, B] + TI_DATA
CONFIGS = DISTILLED + [MHCA]
BUILT = [TI, S, B, MHCA]  # students built for the structural facts

# Every DeiT run: main.py's defaults, pinned once on the DeiT configs
# that these inherit (test_logit_recipe.py).
RECIPE = L.DEIT_RECIPE
# Hard distillation through the distillation token (README_deit.md's
# command: --distillation-type hard).
DISTILLATION = [
    ('teacher.model', 'regnety_160', f'{MAIN}:142'),
    ('teacher.checkpoint',
     'https://dl.fbaipublicfiles.com/deit/regnety_160-a5fe301d.pth',
     f'{DEIT}:README_deit.md:241'),
    # teacher_model.eval() once; train_one_epoch's model.train() is the
    # student's only.
    ('teacher.train_mode', {'teacher': False}, f'{MAIN}:387'),
    ('loss.loss_deit.mode', 'hard', f'{DEIT}:README_deit.md:241'),
    # loss = base (1 - alpha) + hard CE alpha, alpha 0.5.
    ('student_loss_weight', 0.5, f'{DEIT}:losses.py:69'),
    ('loss.loss_deit.weight', 0.5, f'{MAIN}:146'),
    ('head.type', 'DeiTDistillHead', f'{DEIT}:models.py:51-59'),
]
# The built student: timm 0.3.2's VisionTransformer under DeiT's models.py.
STRUCTURE = [
    ('depth', 12, f'{DEIT}:models.py:110'),
    ('mlp_hidden', 4, f'{DEIT}:models.py:110'),
    ('qkv_bias', True, f'{DEIT}:models.py:110'),
    ('ln_eps', 1e-6, f'{DEIT}:models.py:111'),
    # Stochastic depth growing linearly from 0 to drop_path over the blocks.
    ('drop_path.rates', 'linear', f'{TIMM}:timm/models/'
     'vision_transformer.py:226'),
    ('init.pos_embed', 0.02, f'{TIMM}:timm/models/vision_transformer.py:241'),
    ('init.cls_token', 0.02, f'{TIMM}:timm/models/vision_transformer.py:242'),
    ('init.linear', 0.02, f'{TIMM}:timm/models/vision_transformer.py:245-249'),
    ('init.ffn', 0.02, f'{TIMM}:timm/models/vision_transformer.py:245-249'),
    ('init.head', 0.02, f'{TIMM}:timm/models/vision_transformer.py:245-249'),
    # PyTorch's Conv2d default (std 1 / sqrt(3 fan_in)): timm 0.3.2 leaves
    # the patch embedding alone.
    ('init.patch_embed', 'torch default',
     f'{TIMM}:timm/models/vision_transformer.py:245-252'),
    # add_weight_decay: 1-D parameters, biases and no_weight_decay()
    # ({pos_embed, cls_token}; the distillation token is decayed).
    ('decay_exempt.params', '1-D, biases, pos_embed, cls_token',
     f'{TIMM}:timm/optim/optim_factory.py:31'),
]
WIDTH = {TI: (192, 3), S: (384, 6), B: (768, 12), MHCA: (192, 3)}
SIZE_SOURCE = {
    TI: f'{DEIT}:models.py:110', S: f'{DEIT}:models.py:125',
    B: f'{DEIT}:models.py:140', MHCA: f'{DEIT}:models.py:65'
}

FACTS = [(c, k, v, src) for c in CONFIGS for k, v, src in RECIPE]
FACTS += [(c, k, v, src) for c in DISTILLED for k, v, src in DISTILLATION]
FACTS += [(c, k, v, src) for c in BUILT for k, v, src in STRUCTURE]
FACTS += [(c, 'width_heads', WIDTH[c], SIZE_SOURCE[c]) for c in BUILT]
FACTS += [
    # DeiT-B: 2 nodes x 8 GPUs x --batch-size 64.
    (B, 'batch_per_gpu', 64, f'{DEIT}:README_deit.md:233-241'),
    (TI, 'batch_per_gpu', 256, f'{DEIT}:README_deit.md:221'),
    (S, 'batch_per_gpu', 256, f'{DEIT}:README_deit.md:216'),
    # The MHCA-only row: DeiT without a teacher (--distillation-type none).
    (MHCA, 'distiller', None, f'{MAIN}:145'),
    (MHCA, 'head.type', 'VisionTransformerClsHead', f'{DEIT}:models.py:64'),
]

OURS = {
    'ema': (None, 'DeiT keeps an EMA copy but evaluates and reports the '
            'raw weights (main.py:447); the copy changes no number'),
    'amp': (False, 'a launch option here (tools/train.py --amp), not a '
            'config value'),
}
DELIBERATE = {(c, key): value for c in CONFIGS for key, value in OURS.items()}

_CFG = {}
_STUDENT = {}


def _cfg(name):
    if name not in _CFG:
        _CFG[name] = Config.fromfile(
            osp.join(ROOT, 'configs', 'dearkd', name))
    return _CFG[name]


def _student(name):
    """The student built and initialised (no teacher), once per name."""
    if name not in _STUDENT:
        cfg = _cfg(name)
        spec = cfg.model.get('student') or cfg.model
        torch.manual_seed(0)
        model = MODELS.build(spec)
        model.init_weights()
        _STUDENT[name] = model
    return _STUDENT[name]


def _decay_exempt(name):
    """The official rule against the weight decay that the config's
    optimizer constructor gives each student parameter."""
    from mmengine.optim import build_optim_wrapper
    model = _student(name)
    wrapper = build_optim_wrapper(model, _cfg(name).optim_wrapper)
    decay = {}
    for group in wrapper.optimizer.param_groups:
        for param in group['params']:
            decay[id(param)] = group['weight_decay']
    timm_skip = {'backbone.pos_embed', 'backbone.cls_token'}
    for pname, param in model.named_parameters():
        official = (param.ndim == 1 or pname.endswith('.bias')
                    or pname in timm_skip)
        if (decay[id(param)] == 0) != official:
            return f'{pname}: weight decay {decay[id(param)]}'
    return '1-D, biases, pos_embed, cls_token'


def _structure(name, key):
    model = _student(name)
    backbone = model.backbone
    layers = backbone.layers
    if key == 'width_heads':
        return backbone.embed_dims, layers[0].attn.num_heads
    if key == 'depth':
        return len(layers)
    if key == 'mlp_hidden':
        return layers[0].ffn.layers[0][0].out_features // backbone.embed_dims
    if key == 'qkv_bias':
        return all(layer.attn.qkv.bias is not None for layer in layers)
    if key == 'ln_eps':
        eps = {m.eps for m in model.modules()
               if isinstance(m, torch.nn.LayerNorm)}
        return eps.pop() if len(eps) == 1 else eps
    if key == 'drop_path.rates':
        rates = [layer.ffn.dropout_layer.drop_prob for layer in layers]
        top = _cfg(name).model.get('student', _cfg(name).model).backbone[
            'drop_path_rate']
        expected = [top * i / (len(layers) - 1) for i in range(len(layers))]
        return 'linear' if torch.allclose(
            torch.tensor(rates, dtype=torch.float64),
            torch.tensor(expected, dtype=torch.float64)) else rates
    if key == 'init.pos_embed':
        return 0.02 if V.std_is(backbone.pos_embed, 0.02) else float(
            backbone.pos_embed.std())
    if key == 'init.cls_token':
        std = float(backbone.cls_token.std())
        return 0.02 if V.std_is(backbone.cls_token, 0.02) else round(std, 4)
    if key == 'init.linear':
        weights = [layer.attn.qkv.weight for layer in layers]
        return 0.02 if all(V.std_is(w, 0.02) for w in weights) else 'other'
    if key == 'init.ffn':
        weight = layers[0].ffn.layers[0][0].weight
        fan_in, fan_out = weight.shape[1], weight.shape[0]
        xavier = (2 / (fan_in + fan_out))**0.5
        if V.std_is(weight, 0.02):
            return 0.02
        return 'xavier' if V.std_is(weight, xavier) else float(weight.std())
    if key == 'init.head':
        heads = [m for m in model.head.modules()
                 if isinstance(m, torch.nn.Linear)]
        ok = all(V.std_is(h.weight, 0.02) and not h.bias.any() for h in heads)
        return 0.02 if ok else 'other'
    if key == 'init.patch_embed':
        weight = backbone.patch_embed.projection.weight
        default = (1 / (3 * weight[0].numel()))**0.5
        return 'torch default' if V.std_is(weight, default) else float(
            weight.std())
    if key == 'decay_exempt.params':
        return _decay_exempt(name)
    raise KeyError(key)


def our_value(name, key):
    """What config ``name`` trains for fact ``key``."""
    cfg = _cfg(name)
    model = cfg.model
    student = model.get('student') or model
    facts = recipe_facts(cfg)
    if key in facts:
        return facts[key]
    if key == 'lr.curve':
        official = L.timm_cosine(1e-3, 300, 2, 5, 1e-6, 1e-5)
        gap = V.max_relative_gap(V.simulate_lr(cfg, 2), official)
        return L.LR_CURVE if gap < 1e-3 else gap
    if key == 'repeated_aug':
        sampler = cfg.train_dataloader.sampler
        return (sampler.get('num_repeats', 3)
                if sampler.type == 'RepeatAugSampler' else None)
    if key.startswith('randaugment.'):
        step = transform(cfg, 'RandAugment')
        if key == 'randaugment.policies':
            return step.policies
        return step.hparams.get('interpolation')
    if key == 'color_jitter':
        step = transform(cfg, 'ColorJitter')
        return None if step is None else step.get('brightness')
    if key == 'random_erasing.mode':
        return transform(cfg, 'RandomErasing').mode
    if key == 'train.flip':
        flip = transform(cfg, 'RandomFlip')
        return None if flip is None else (
            flip.prob if flip.direction == 'horizontal' else flip.direction)
    if key == 'normalisation':
        pre = cfg.data_preprocessor
        return (tuple(pre.mean), tuple(pre.std)) if pre.to_rgb else None
    if key == 'batch_augments.probs':
        return student.train_cfg.get('probs')
    if key == 'amp':
        return 'Amp' in (cfg.optim_wrapper.get('type') or '')
    if key == 'teacher.model':
        return model.teacher.config.model_name
    if key == 'teacher.checkpoint':
        return model.teacher.checkpoint
    if key == 'loss.loss_deit.mode':
        return model.losses.loss_deit.mode
    if key == 'head.type':
        return student.head.type
    if key == 'distiller':
        return model.type if model.type != 'ImageClassifier' else None
    return _structure(name, key)


@pytest.mark.parametrize('name,key,official,source', FACTS,
                         ids=[f'{c[:-3]}:{k}' for c, k, _, _ in FACTS])
def test_fact(name, key, official, source):
    ours = our_value(name, key)
    V.check_fact(ours, official, source, DELIBERATE, name, key)


def test_sources_are_pinned():
    for _, _, _, source in FACTS:
        repo, rest = source.split('@')
        commit, path_line = rest.split(':', 1)
        assert repo in ('facebookresearch/deit',
                        'huggingface/pytorch-image-models'), source
        assert len(commit) == 7 and path_line.count(':') == 1, source


def test_every_difference_is_in_the_readme():
    with open(README) as f:
        text = f.read()
    section = text.split('## Differences from DeiT')[1].split('\n## ')[0]
    for key in {key for _, key in DELIBERATE}:
        assert f'`{key}`' in section, key


def test_the_table_covers_every_imagenet_config():
    import glob
    found = {
        osp.basename(p)
        for p in glob.glob(osp.join(ROOT, 'configs', 'dearkd', '*.py'))
        if 'digits' not in p
    }
    assert found == set(CONFIGS)
