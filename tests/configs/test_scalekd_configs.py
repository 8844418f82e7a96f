"""ScaleKD's ImageNet configs (configs/scalekd/*in1k*.py): the facts of
METHODS.md §4 they must carry.

test_all_configs.py builds every other config; each ScaleKD config is built
here, once (real size, random teachers, no downloads), to read what its
build-time dry run captured and the size of its projectors. These are big
models on a CPU: about 15-20 s per config on 2 cores.
"""
import glob
import os.path as osp
import re

import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope

import cls_kd
from cls_kd.registry import HOOKS, MODELS

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(
    osp.basename(p)
    for p in glob.glob(osp.join(ROOT, 'configs', 'scalekd', '*in1k*.py')))

cls_kd.register_all_modules()

# Student taps s_s3 / s_s4 as the dry run captures them (2 images, 224 px).
_R50 = ((2, 1024, 14, 14), (2, 2048, 7, 7))
STUDENT = {
    'mobilenet-v1': ((2, 512, 14, 14), (2, 1024, 7, 7)),
    'resnet50': _R50,
    'resnet50-d': _R50,
    'convnext-tiny': ((2, 384, 14, 14), (2, 768, 7, 7)),
    'mixer-small-p16': ((2, 196, 512), (2, 196, 512)),
    'mixer-base-p16': ((2, 196, 768), (2, 196, 768)),
    'mixer-base-p14': ((2, 256, 768), (2, 256, 768)),
    'vit-small-p16': ((2, 196, 384), (2, 196, 384)),
    'vit-base-p16': ((2, 196, 768), (2, 196, 768)),
    'vit-base-p14': ((2, 256, 768), (2, 256, 768)),
    # The real stage-3 output (14x14), not the stage after its merging.
    'swin-tiny': ((2, 196, 384), (2, 49, 768)),
}
# The teacher's final feature (t_final) and the α_sp / α_fr of the paper.
TEACHER = {
    'swin-small': ((2, 49, 768), (0.08, 0.06)),
    'swin-base': ((2, 49, 1024), (0.08, 0.06)),
    'swin-large': ((2, 49, 1536), (0.08, 0.06)),
    'eva-large-p14': ((2, 256, 1024), (0.016, 0.008)),
}
# The paper's rows: (teacher, student) of the advanced (300 epochs) and the
# traditional (100 epochs) recipe.
ADVANCED = {('swin-large', s) for s in STUDENT if not s.endswith('p14')} | {
    ('eva-large-p14', s)
    for s in ('resnet50', 'mixer-base-p14', 'vit-base-p14')
}
TRADITIONAL = {(t, 'resnet50') for t in ('swin-small', 'swin-base',
                                         'swin-large')}
# Recipe facts by the tag of the file name.
RECIPES = {
    '8xb256-300e': dict(optimizer=('Lamb', 5e-3, 0.02), epochs=300,
                        batch=256),
    '8xb128-300e': dict(optimizer=('AdamW', 1e-3, 0.05), epochs=300,
                        batch=128),
    '8xb192-300e': dict(optimizer=('AdamW', 7e-4, 0.067), epochs=300,
                        batch=192),
    '8xb32-100e': dict(optimizer=('SGD', 0.1, 1e-4), epochs=100, batch=32),
}
NAME = re.compile(r'scalekd_(?P<teacher>.+?)_(?P<student>.+)_'
                  r'(?P<recipe>8xb\d+-\d+e)_in1k\.py')


def _parts(config):
    match = NAME.fullmatch(config)
    assert match, config
    return match['teacher'], match['student'], match['recipe']


def _load(config):
    return Config.fromfile(osp.join(ROOT, 'configs', 'scalekd', config))


def test_every_row_has_a_config():
    rows = {_parts(c)[:2] + (_parts(c)[2].endswith('300e'), )
            for c in CONFIGS}
    assert rows == {r + (True, ) for r in ADVANCED} | {
        r + (False, ) for r in TRADITIONAL}
    assert len(CONFIGS) == len(rows)


@pytest.mark.parametrize('config', CONFIGS)
def test_config_facts(config):
    """Read from the config: teacher, loss weights, recipe."""
    teacher, student, recipe = _parts(config)
    cfg = _load(config)
    model = cfg.model
    assert cfg.default_scope == 'cls_kd'
    assert model.type == 'ClassificationDistiller'
    assert model.student_loss_weight == 0.5

    # The teacher is the one of the file name, and its checkpoint is of the
    # same model and size (the published Swin-S config loads Swin-L weights).
    spec = model.teacher
    url = osp.basename(spec.checkpoint)
    if teacher.startswith('swin-'):
        size = teacher[len('swin-'):]
        assert spec.config == ('mmpretrain::swin_transformer/'
                               f'swin-{size}_16xb64_in1k.py')
        assert url.startswith(f'swin_{size}_patch4_window7_224')
        assert model.connectors.tpp.runner.type == 'SwinStageRunner'
        assert model.taps.t_final == dict(model='teacher',
                                          path='backbone.norm3')
    else:
        assert spec.config == 'mmpretrain::eva/eva-l-p14_8xb16_in1k-196px.py'
        assert url.startswith('eva-l-p14_mim-in21k-pre_3rdparty_in1k')
        assert spec.override == dict(backbone=dict(img_size=224))
        assert model.connectors.tpp.runner == dict(
            type='ViTBlocksRunner', start=-2, add_prefix=True)
        assert model.taps.t_final.path == 'backbone.layers.23'
        for name in ('cap3', 'cap3_alt', 'cap4', 'cap4_alt'):
            cap = model.connectors[name]
            assert (cap.out_channels, cap.num_heads, cap.gamma,
                    cap.query_size) == (1024, 8, 0.2, 16)
    assert not spec.get('train_mode', False)

    # α_sp on the spatial view, α_fr on the frequency view, both stages;
    # KD 0.5 at T = 1.
    alpha_sp, alpha_fr = TEACHER[teacher][1]
    weights = {k: v.loss_weight for k, v in model.losses.items()}
    assert weights == dict(loss_s3=alpha_sp, loss_s4=alpha_sp,
                           loss_s3_alt=alpha_fr, loss_s4_alt=alpha_fr,
                           loss_kd=0.5)
    assert model.losses.loss_kd.temperature == 1.0
    for name in ('cap4', 'cap4_alt'):
        assert model.connectors[name].learnable_query is False

    # The recipe.
    facts = RECIPES[recipe]
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr,
            optimizer.weight_decay) == facts['optimizer']
    assert cfg.train_cfg.max_epochs == facts['epochs']
    assert cfg.train_dataloader.batch_size == facts['batch']
    assert not (model.student.get('train_cfg') or {}).get('augments'), \
        'ScaleKD trains without Mixup/CutMix'
    pipeline = {t.type: t for t in cfg.train_dataloader.dataset.pipeline}
    hooks = {h.type: h for h in cfg.get('custom_hooks', [])}
    if recipe == '8xb32-100e':
        assert optimizer.momentum == 0.9
        assert cfg.param_scheduler.milestones == [30, 60, 90]
    else:
        assert pipeline['RandomErasing'].erase_prob == 0.25
    if recipe == '8xb256-300e':  # BCE, RandAugment magnitude 7
        assert model.student.head.loss == dict(
            type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0)
        assert pipeline['RandAugment'].magnitude_level == 7
        warmup, cosine = cfg.param_scheduler
        assert (warmup.type, warmup.end) == ('LinearLR', 5)
        assert (cosine.type, cosine.end) == ('CosineAnnealingLR', 300)
    if recipe == '8xb128-300e':
        assert hooks['EMAHook'].momentum == 1e-4
    else:
        assert 'EMAHook' not in hooks

    # The checkpoint hook resolves in cls_kd's registry (the dict inherited
    # from mmpretrain's runtime carries mmpretrain's scope).
    with DefaultScope.overwrite_default_scope('cls_kd'):
        hook = HOOKS.build(cfg.default_hooks.checkpoint)
    assert type(hook).__name__ == 'SafeCheckpointHook'


@pytest.mark.parametrize('config', CONFIGS)
def test_built_model(config):
    """Build once at 224 px; read the dry run's tap shapes."""
    teacher, student, _ = _parts(config)
    cfg = _load(config)
    assert cfg.default_scope == 'cls_kd'
    model_cfg = cfg.model
    model_cfg.teacher.update(checkpoint=None, random_init=True)
    model_cfg.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    model = MODELS.build(model_cfg)

    shapes = model.captures.shapes
    s3, s4 = STUDENT[student]
    assert shapes == {
        's_s3': f'Tensor{s3}',
        's_s4': f'Tensor{s4}',
        't_final': f'Tensor{TEACHER[teacher][0]}',
    }
    projectors = sum(p.numel() for p in model.connectors.parameters())
    if (teacher, student) == ('swin-large', 'resnet50'):
        # METHODS.md: the four projectors of ResNet-50 are ~176 M.
        assert 170e6 < projectors < 180e6
    # The projectors are the only trainable parameters besides the
    # student's (the teacher is frozen and outside the module tree).
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    student_params = sum(p.numel() for p in model.student.parameters())
    assert trainable == student_params + projectors
