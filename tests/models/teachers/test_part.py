import copy

import pytest
import torch
import torch.nn as nn
from mmpretrain.structures import DataSample

import cls_kd
from cls_kd.models.teachers import (
    SequentialRunner,
    SwinStageRunner,
    TeacherAccess,
    TeacherPart,
    ViTBlocksRunner,
)
from cls_kd.registry import MODELS, TEACHER_RUNNERS

cls_kd.register_all_modules()

VIT_ARCH = dict(
    embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64)
SWIN_ARCH = dict(embed_dims=16, depths=[1, 1, 1, 2], num_heads=[1, 1, 2, 2])
BEIT_SHARED = dict(
    use_rel_pos_bias=False, use_shared_rel_pos_bias=True, final_norm=True)

# (backbone type, extra arguments): each ViT family the runner covers.
VITS = [
    ('VisionTransformer', {}),
    ('DistilledVisionTransformer', {}),  # two prefix tokens
    ('FixedDeiT3', {}),
    ('ViTEVA02', {}),  # blocks take the patch grid (rotary embedding)
    ('BEiTViT', BEIT_SHARED),
    ('BEiTViT', {}),  # per-block relative bias, no final norm
]


def frozen_teacher(backbone: dict) -> nn.Module:
    """An eval-mode classifier frozen as the distiller freezes teachers.
    Parameters are perturbed so that zero-initialised ones (relative
    position bias tables, layer scales) change the output."""
    torch.manual_seed(0)
    model = MODELS.build(
        dict(type='ImageClassifier', backbone=backbone, neck=None, head=None))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval().requires_grad_(False)


def vit_teacher(kind='VisionTransformer', **kwargs) -> nn.Module:
    return frozen_teacher(
        dict(type=kind, arch=VIT_ARCH, img_size=32, patch_size=8,
             out_type='raw', **kwargs))


def swin_teacher(kind='SwinTransformer', **kwargs) -> nn.Module:
    arch = dict(SWIN_ARCH)
    if kind == 'SwinTransformerV2':
        arch['extra_norm_every_n_blocks'] = 0
    # A 32x32 grid with 2x2 windows: the last stage (4x4) shifts windows.
    return frozen_teacher(
        dict(type=kind, arch=arch, img_size=64, patch_size=2, window_size=2,
             **kwargs))


def run_capturing(module: nn.Module, run):
    """``run()``'s result and the positional inputs ``module`` got."""
    seen = []
    handle = module.register_forward_pre_hook(lambda m, a: seen.append(a))
    try:
        with torch.no_grad():
            out = run()
    finally:
        handle.remove()
    return out, seen[0]


def bound_part(runner: dict, model: nn.Module) -> TeacherPart:
    part = MODELS.build(dict(type='TeacherPart', runner=runner))
    part.bind_teacher(model)
    return part


@pytest.mark.parametrize('kind,kwargs', VITS)
def test_vit_blocks_match_the_backbone(kind, kwargs):
    model = vit_teacher(kind, **kwargs)
    (expected, ), args = run_capturing(
        model.backbone.layers[2],
        lambda: model.backbone(torch.randn(2, 3, 32, 32)))
    part = bound_part(dict(type='ViTBlocksRunner', start=-2), model)
    with torch.no_grad():
        out = part(args[0])
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_beit_shared_bias_is_passed_to_the_blocks():
    model = vit_teacher('BEiTViT', **BEIT_SHARED)
    (expected, ), args = run_capturing(
        model.backbone.layers[2],
        lambda: model.backbone(torch.randn(2, 3, 32, 32)))
    x = args[0]
    with torch.no_grad():
        for block in model.backbone.layers[2:]:
            x = block(x, None)
        unbiased = model.backbone.ln1(x)
    assert not torch.allclose(unbiased, expected, atol=1e-3)


def test_sequential_runner_chains_modules():
    model = vit_teacher()
    (expected, ), args = run_capturing(
        model.backbone.layers[1],
        lambda: model.backbone(torch.randn(2, 3, 32, 32)))
    paths = [f'backbone.layers.{i}' for i in (1, 2, 3)] + ['backbone.ln1']
    part = bound_part(dict(type='SequentialRunner', paths=paths), model)
    torch.testing.assert_close(part(args[0]), expected)


@pytest.mark.parametrize('size', [(64, 64), (64, 32)])
def test_swin_merging_and_last_stage_match_the_backbone(size):
    model = swin_teacher()
    (expected, ), (tokens, hw) = run_capturing(
        model.backbone.stages[2].downsample,
        lambda: model.backbone(torch.randn(2, 3, *size)))
    assert tuple(hw) == (size[0] // 8, size[1] // 8)
    part = bound_part(dict(type='SwinStageRunner', stage=3), model)
    grid = tokens.transpose(1, 2).reshape(2, -1, *hw)  # B, C, H, W
    expected = expected.flatten(2).transpose(1, 2)  # B, H'*W', C'
    with torch.no_grad():
        outs = [part(tokens, hw_shape=hw), part(grid)]
        if size[0] == size[1]:
            outs.append(part(tokens))
    assert expected.shape == (2, hw[0] * hw[1] // 4, 128)
    for out in outs:
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('kind,stage,with_downsample', [
    ('SwinTransformer', -1, False),
    ('SwinTransformerV2', 3, True),
])
def test_swin_stage_input_variants(kind, stage, with_downsample):
    model = swin_teacher(kind)
    (expected, ), (tokens, hw) = run_capturing(
        model.backbone.stages[3],
        lambda: model.backbone(torch.randn(2, 3, 64, 64)))
    part = bound_part(
        dict(type='SwinStageRunner', stage=stage,
             with_downsample=with_downsample), model)
    with torch.no_grad():
        out = part(tokens, hw_shape=hw)
    torch.testing.assert_close(
        out, expected.flatten(2).transpose(1, 2), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('teacher,runner,shape', [
    (vit_teacher, dict(type='ViTBlocksRunner', start=-2), (2, 17, 32)),
    (lambda: vit_teacher('BEiTViT', **BEIT_SHARED),
     dict(type='ViTBlocksRunner', start=-2), (2, 17, 32)),
    (swin_teacher, dict(type='SwinStageRunner', stage=3), (2, 64, 64)),
])
def test_gradients_reach_the_input_only(teacher, runner, shape):
    model = teacher()
    part = bound_part(runner, model)
    x = torch.randn(*shape, requires_grad=True)
    with torch.no_grad():  # the connector turns autograd back on
        out = part(x)
    (out * torch.randn_like(out)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None
               for p in model.parameters())


def test_teacher_is_outside_the_connector():
    model = vit_teacher()
    part = bound_part(dict(type='ViTBlocksRunner', start=-2), model)
    assert isinstance(part, TeacherAccess) and part.teacher_name == 'teacher'
    assert part.teacher is model
    assert list(part.parameters()) == [] and list(part.buffers()) == []
    assert part.state_dict() == {}
    assert [name for name, _ in part.named_modules()] == ['']
    owner = nn.ModuleDict(dict(tpp=part, proj=nn.Linear(4, 4)))
    assert len(list(owner.parameters())) == 2
    assert set(owner.state_dict()) == {'proj.weight', 'proj.bias'}
    owner.train()
    assert not any(m.training for m in model.modules())


def test_deepcopy_shares_the_teacher():
    model = vit_teacher()
    part = bound_part(dict(type='ViTBlocksRunner', start=-2), model)
    clone = copy.deepcopy(nn.ModuleDict(dict(tpp=part)))['tpp']
    assert clone is not part and clone.teacher is model
    assert clone.runner is not part.runner
    assert all(a is b for a, b in zip(clone.runner._parts().blocks,
                                      model.backbone.layers[2:]))
    x = torch.randn(2, 17, 32)
    torch.testing.assert_close(clone(x), part(x))
    other = vit_teacher()
    clone.bind_teacher(other)  # rebinding the copy leaves the original
    assert part.teacher is model and clone.teacher is other


def test_built_from_config_or_runner_object():
    assert {'SequentialRunner', 'ViTBlocksRunner',
            'SwinStageRunner'} <= set(TEACHER_RUNNERS.module_dict)
    part = TeacherPart(SwinStageRunner(stage=-1), teacher='big')
    assert part.teacher_name == 'big'
    assert 'SwinStageRunner(stage=-1' in repr(part)
    for kind in ('ViTBlocksRunner', ViTBlocksRunner):
        runner = TeacherPart(dict(type=kind, start=0, end=2)).runner
        assert isinstance(runner, ViTBlocksRunner) and runner.end == 2


def test_unbound_use_is_an_error():
    part = TeacherPart(dict(type='ViTBlocksRunner', start=-2))
    with pytest.raises(RuntimeError, match="teacher 'teacher' is not bound"):
        part(torch.randn(2, 17, 32))
    with pytest.raises(RuntimeError, match='not bound to a teacher'):
        SequentialRunner('backbone.ln1')(torch.randn(2, 17, 32))
    # A failed bind leaves the connector unbound.
    with pytest.raises(ValueError):
        part.bind_teacher(swin_teacher())
    with pytest.raises(RuntimeError, match='is not bound'):
        part(torch.randn(2, 17, 32))
    with pytest.raises(TypeError, match='expects a nn.Module'):
        part.bind_teacher({'backbone': None})


def test_wrong_family_is_an_error():
    with pytest.raises(ValueError, match=r"'backbone' of the teacher is a "
                       r"SwinTransformer; expected one of "
                       r"\['VisionTransformer', 'BEiTViT'\]"):
        ViTBlocksRunner(start=-2).bind(swin_teacher())
    with pytest.raises(ValueError, match=r"is a VisionTransformer; expected "
                       r"one of \['SwinTransformer', 'SwinTransformerV2'\]"):
        SwinStageRunner(stage=3).bind(vit_teacher())


@pytest.mark.parametrize('runner,message', [
    (SwinStageRunner(stage=4), r'stage 4 is out of range: the backbone has '
     r'4 stages \(0..3'),
    (SwinStageRunner(stage=-5), 'stage -5 is out of range'),
    (SwinStageRunner(stage=0), 'no patch merging precedes stage 0'),
    (SwinStageRunner(stage=2), r'no norm2 \(out_indices=\(3,\)\)'),
    (SwinStageRunner(stage=3, backbone='backbones'),
     r"no module 'backbones'\. Closest existing: \['backbone'"),
])
def test_bad_swin_settings(runner, message):
    with pytest.raises((ValueError, KeyError), match=message):
        runner.bind(swin_teacher())


@pytest.mark.parametrize('runner,message', [
    (ViTBlocksRunner(start=4), 'block 4 is out of range'),
    (ViTBlocksRunner(start=2, end=2), 'start=2, end=2 select no blocks'),
    (ViTBlocksRunner(start=1, end=-1),
     r'final norm only after its last block \(3\), not after block 2'),
    (SequentialRunner(['backbone.layers.3', 'backbone.ln2']),
     "no module 'backbone.ln2'"),
])
def test_bad_vit_settings(runner, message):
    with pytest.raises((ValueError, KeyError), match=message):
        runner.bind(vit_teacher())


def test_bad_inputs():
    with pytest.raises(KeyError, match="unknown runner type 'ViTRunner'"):
        TeacherPart(dict(type='ViTRunner', start=-2))
    eva = bound_part(dict(type='ViTBlocksRunner', start=-1),
                     vit_teacher('ViTEVA02'))
    with pytest.raises(ValueError, match='grid of 6 tokens'):
        eva(torch.randn(2, 7, 32))
    assert eva(torch.randn(2, 7, 32), hw_shape=(2, 3)).shape == (2, 7, 32)
    swin = bound_part(dict(type='SwinStageRunner', stage=3), swin_teacher())
    with pytest.raises(ValueError, match='the stage takes 64 channels'):
        swin(torch.randn(2, 16, 32))
    # A shorter final range without the norm is allowed.
    part = bound_part(
        dict(type='ViTBlocksRunner', start=1, end=-1, final_norm=False),
        vit_teacher())
    assert part(torch.randn(2, 17, 32)).shape == (2, 17, 32)


def test_distiller_binds_the_teacher():
    def vit(width):
        return dict(
            type='ImageClassifier',
            backbone=dict(type='VisionTransformer', arch=dict(
                VIT_ARCH, embed_dims=width, feedforward_channels=2 * width),
                img_size=32, patch_size=8),
            neck=None,
            head=dict(type='VisionTransformerClsHead', num_classes=10,
                      in_channels=width))

    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='ClassificationDistiller',
        student=vit(32),
        teacher=dict(config=vit(48), checkpoint=None, random_init=True),
        taps=dict(s_tok=dict(path='backbone.layers.1'),
                  t_tok=dict(model='teacher', path='backbone.ln1')),
        connectors=dict(
            proj=dict(type='LinearConnector', in_channels=32,
                      out_channels=48),
            tpp=dict(type='TeacherPart',
                     runner=dict(type='ViTBlocksRunner', start=-2))),
        losses=dict(loss_tpp=dict(
            type='PixelReconstructionLoss', criterion='L2',
            inputs=dict(pred='tpp(proj(s_tok))', target='t_tok'))),
        data_preprocessor=dict(
            num_classes=10, mean=[0., 0., 0.], std=[1., 1., 1.])))
    teacher = model.teachers['teacher']
    assert model.connectors['tpp'].teacher is teacher
    losses = model.loss(torch.randn(2, 3, 32, 32),
                        [DataSample().set_gt_label(k) for k in (1, 2)])
    losses['loss_tpp'].backward()
    assert all(p.grad is None for p in teacher.parameters())
    proj = model.connectors['proj'].proj.weight
    assert proj.grad is not None and proj.grad.abs().sum() > 0
    assert not [k for k in model.state_dict() if 'tpp' in k]
