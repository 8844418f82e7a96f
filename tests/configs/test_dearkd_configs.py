"""DearKD's configs (configs/dearkd/): the choices README.md documents,
the RegNetY-16GF teacher loading DeiT's public checkpoint layout, the
seeded partial-data subsets and the two stages.

test_all_configs.py builds every other config (with its dry run); one
ImageNet config per width is built here, once, to read its tap shapes and
trainable parameters and to pass the checks of every built distiller
(``check_distiller``, conftest.py): RegNetY-16GF and a DeiT on a CPU,
marked slow."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config

import cls_kd
from cls_kd.models.teachers import build_teacher
from cls_kd.registry import MODELS

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
IN1K = sorted(
    osp.basename(p) for p in glob.glob(
        osp.join(ROOT, 'configs', 'dearkd', 'dearkd_*in1k*.py')))
# One config per width is built here (the others differ in data only).
WIDTHS = [c for c in IN1K if c.endswith('_in1k.py')]
WIDTH = dict(tiny=192, small=384, base=768)
FRACTION = {'-10pct': 0.1, '-25pct': 0.25, '-50pct': 0.5}

cls_kd.register_all_modules()


def _load(config):
    return Config.fromfile(osp.join(ROOT, 'configs', 'dearkd', config))


def regnety_16gf_layout():
    """The key layout of DeiT's RegNetY-16GF checkpoint (timm's RegNet
    naming), written out from the architecture -- widths (224, 448, 1232,
    3024), depths (2, 4, 11, 1), group width 112, squeeze-excitation to a
    quarter of the block's input width, stem 32 -- not from timm."""
    shapes = {}

    def conv_bn(prefix, out, inp, k=1, groups=1):
        shapes[f'{prefix}.conv.weight'] = (out, inp // groups, k, k)
        for name in ('weight', 'bias', 'running_mean', 'running_var'):
            shapes[f'{prefix}.bn.{name}'] = (out, )
        shapes[f'{prefix}.bn.num_batches_tracked'] = ()

    conv_bn('stem', 32, 3, 3)
    width_in = 32
    for s, (width, depth) in enumerate(
            zip((224, 448, 1232, 3024), (2, 4, 11, 1)), 1):
        for b in range(1, depth + 1):
            p = f's{s}.b{b}'
            conv_bn(f'{p}.conv1', width, width_in)
            conv_bn(f'{p}.conv2', width, width, 3, groups=width // 112)
            se = int(width_in * 0.25)
            shapes[f'{p}.se.fc1.weight'] = (se, width, 1, 1)
            shapes[f'{p}.se.fc1.bias'] = (se, )
            shapes[f'{p}.se.fc2.weight'] = (width, se, 1, 1)
            shapes[f'{p}.se.fc2.bias'] = (width, )
            conv_bn(f'{p}.conv3', width, width)
            if b == 1:
                conv_bn(f'{p}.downsample', width, width_in)
            width_in = width
    shapes['head.fc.weight'] = (1000, 3024)
    shapes['head.fc.bias'] = (1000, )
    return shapes


def test_regnety_teacher_loads_deit_checkpoint_layout(tmp_path):
    """A file laid out like regnety_160-a5fe301d.pth ({'model': timm state
    dict}) loads into the teacher spec of the configs, every key."""
    layout = regnety_16gf_layout()
    gen = torch.Generator().manual_seed(0)
    state = {
        k: (torch.randn(shape, generator=gen) if shape else torch.tensor(7))
        for k, shape in layout.items()
    }
    path = tmp_path / 'regnety_160-a5fe301d.pth'
    torch.save({'model': state}, path)
    spec = dict(Config.fromfile(
        osp.join(ROOT, 'configs', '_base_', 'teachers',
                 'regnety-160_in1k.py')).teacher)
    assert spec['checkpoint'] == ('https://dl.fbaipublicfiles.com/deit/'
                                  'regnety_160-a5fe301d.pth')
    spec['checkpoint'] = str(path)
    report = {}
    teacher, _ = build_teacher('teacher', spec, report)
    assert report['loaded'] == report['total'] == len(layout) == 428
    # TimmClassifier's state dict has timm's own keys (its `model.` prefix
    # is dropped by mmpretrain's state-dict hook).
    own = teacher.state_dict()
    assert {k: tuple(v.shape) for k, v in own.items()} == layout
    assert torch.equal(own['s2.b1.conv2.conv.weight'],
                       state['s2.b1.conv2.conv.weight'])


def test_every_in1k_config_is_there():
    assert IN1K == [
        'dearkd_regnety-160_deit-base_16xb64_in1k.py',
        'dearkd_regnety-160_deit-small_4xb256_in1k.py',
        'dearkd_regnety-160_deit-tiny_4xb256_in1k-10pct.py',
        'dearkd_regnety-160_deit-tiny_4xb256_in1k-25pct.py',
        'dearkd_regnety-160_deit-tiny_4xb256_in1k-50pct.py',
        'dearkd_regnety-160_deit-tiny_4xb256_in1k.py',
    ]
    for name in ('datafree', 'datafree-deepinversion', 'datafree-adi'):
        assert osp.isfile(osp.join(ROOT, 'configs', 'dearkd',
                                   f'dearkd_regnety-160_deit-tiny_4xb256_'
                                   f'{name}.py'))
    assert osp.isfile(osp.join(ROOT, 'configs', 'dearkd',
                               'mhca_deit-tiny_4xb256_in1k.py'))


@pytest.mark.parametrize('config', IN1K)
def test_config_facts(config):
    cfg = _load(config)
    model = cfg.model
    size = config.split('_')[2][len('deit-'):]
    assert cfg.default_scope == 'cls_kd'
    assert model.type == 'ClassificationDistiller'
    assert model.teacher.config['model_name'] == 'regnety_160'
    backbone = model.student.backbone
    assert (backbone.type, backbone.arch, backbone.mhca_layers) == (
        'MHCADistilledVisionTransformer', f'deit-{size}', 4)
    assert model.student.head.type == 'DeiTDistillHead'
    assert model.student.head.in_channels == WIDTH[size]
    # Logit KD: hard, through the distillation token, CE weights 1/2 + 1/2.
    assert model.losses.loss_deit.mode == 'hard'
    assert model.student_loss_weight == 0.5
    # The hidden-state loss on blocks 0-3: stage-2 for 0-1, stage-3 for
    # 2-3, each through its own aligner.
    hidden = model.losses.loss_hidden
    assert hidden.inputs.preds == [
        f'align{i}(to_map(s_block{i}))' for i in range(4)
    ]
    assert hidden.inputs.targets == ['to_grid(t_stage2)'] * 2 + [
        'to_grid(t_stage3)'
    ] * 2
    assert [model.connectors[f'align{i}'].in_channels
            for i in range(4)] == [WIDTH[size]] * 4
    # Two stages: distil for 250 of 300 epochs, then labels alone.
    assert cfg.train_cfg.max_epochs == 300
    assert model.stages == [
        dict(by='epoch', end=250),
        dict(distill=False, student_loss_weight=1.0)
    ]
    train_set = cfg.train_dataloader.dataset
    fraction = FRACTION.get(config[-len('-10pct.py'):-len('.py')])
    if fraction is not None:
        assert (train_set.type, train_set.fraction, train_set.seed,
                train_set.get('per_class', True)) == ('SubsetDataset',
                                                      fraction, 0, True)
        assert train_set.dataset.type == 'ImageNet'
    else:
        assert train_set.type == 'ImageNet'
    assert cfg.train_dataloader.batch_size * int(
        config.split('_')[3].split('xb')[0]) == 1024


@pytest.mark.parametrize('name,root', [
    ('datafree', 'data/dearkd_synth_in1k'),
    ('datafree-deepinversion', 'data/deepinversion_in1k'),
    ('datafree-adi', 'data/adi_in1k'),
])
def test_datafree_configs_read_their_synthesis_output(name, root):
    """Each data-free row trains on the folder its synthesis config's
    command writes (the command in the config's header), with the
    training pipeline of the real-data config."""
    cfg = _load(f'dearkd_regnety-160_deit-tiny_4xb256_{name}.py')
    dataset = cfg.train_dataloader.dataset
    assert (dataset.type, dataset.data_root,
            dataset.data_prefix) == ('CustomDataset', root, 'train')
    real = _load('dearkd_regnety-160_deit-tiny_4xb256_in1k.py')
    assert dataset.pipeline == real.train_dataloader.dataset.pipeline
    with open(osp.join(ROOT, 'configs', 'dearkd',
                       f'dearkd_regnety-160_deit-tiny_4xb256_{name}.py')) as f:
        header = f.read()
    assert f'--out {root}' in header
    synthesis = {
        'datafree': 'deepinversion-intra-div_regnety-160_in1k.py',
        'datafree-deepinversion': 'deepinversion_regnety-160_in1k.py',
        'datafree-adi': 'adi_regnety-160_in1k.py',
    }[name]
    assert f'synthesis/{synthesis}' in header


def test_mhca_alone_is_the_student_without_distillation():
    """The MHCA-alone row: the DearKD-Ti student's backbone (MHCA in
    blocks 0-3) without a distillation token, teacher or hidden loss, at the
    same recipe."""
    cfg = _load('mhca_deit-tiny_4xb256_in1k.py')
    dearkd = _load('dearkd_regnety-160_deit-tiny_4xb256_in1k.py')
    assert cfg.model.type == 'ImageClassifier'
    backbone = cfg.model.backbone
    assert backbone.type == 'MHCAVisionTransformer'
    ours = dict(backbone, type=None)
    theirs = dict(dearkd.model.student.backbone, type=None)
    assert ours == theirs
    model = MODELS.build(cfg.model)
    kinds = [type(layer.attn).__name__ for layer in model.backbone.layers]
    assert kinds[:4] == ['MultiheadConvAttention'] * 4
    assert 'MultiheadConvAttention' not in kinds[4:]
    assert not hasattr(model.backbone, 'dist_token')
    for key in ('optim_wrapper', 'param_scheduler', 'train_dataloader',
                'train_cfg'):
        assert cfg[key] == dearkd[key], key


@pytest.mark.slow
@pytest.mark.parametrize('config', WIDTHS)
def test_built_model(config, build_offline, check_distiller):
    """Real size, random teacher: the dry run's tap shapes, and the
    aligners are the only trainable parameters besides the student's."""
    cfg = _load(config)
    model, losses = build_offline(cfg)
    check_distiller(cfg, model, losses)
    size = config.split('_')[2][len('deit-'):]
    shapes = model.captures.shapes
    width = WIDTH[size]
    for i in range(4):
        assert shapes[f's_block{i}'] == f'Tensor{(2, 196, width)}'
    assert shapes['t_stage2'] == 'Tensor(2, 448, 28, 28)'
    assert shapes['t_stage3'] == 'Tensor(2, 1232, 14, 14)'
    aligners = sum(p.numel() for p in model.connectors.parameters())
    assert aligners == 2 * (width * 448 + 448) + 2 * (width * 1232 + 1232)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == sum(
        p.numel() for p in model.student.parameters()) + aligners
    # The first four blocks are MHCA, the rest mmpretrain's attention.
    kinds = [type(layer.attn).__name__
             for layer in model.student.backbone.layers]
    assert kinds[:4] == ['MultiheadConvAttention'] * 4
    assert 'MultiheadConvAttention' not in kinds[4:]
