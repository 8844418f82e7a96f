import math

import pytest
import torch
from mmengine.registry import DefaultScope
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
from mmpretrain.structures import DataSample
from torch.nn.modules.batchnorm import _BatchNorm

import cls_kd
from cls_kd.models.backbones import MobileNetV1
from cls_kd.registry import MODELS

cls_kd.register_all_modules()

STAGES = ('stem', 'layer1', 'layer2', 'layer3', 'layer4')

# The paper's Table 1, written out independently of the implementation:
# stem 3x3 conv 3 -> 32 stride 2, then (in, out, stride) of the 13
# depthwise-separable blocks.
STEM = (3, 32)
BLOCKS = [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2),
          (256, 256, 1), (256, 512, 2)] + [(512, 512, 1)] * 5 + [
              (512, 1024, 2), (1024, 1024, 1)]


def expected_num_params(stem, blocks):
    """Conv weights (no biases) plus BN weight and bias."""
    c_in, c_out = stem
    total = c_in * c_out * 3 * 3 + 2 * c_out
    for c_in, c_out, _ in blocks:
        total += c_in * 3 * 3 + 2 * c_in  # depthwise: one 3x3 per channel
        total += c_in * c_out + 2 * c_out  # pointwise 1x1
    return total


def num_params(module):
    return sum(p.numel() for p in module.parameters())


def test_output_shapes_224():
    model = MobileNetV1(out_indices=(0, 1, 2, 3)).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        outs = model(x)
        stem = model.stem(x)
    assert isinstance(outs, tuple)
    assert [tuple(o.shape[1:]) for o in outs] == [
        (128, 56, 56), (256, 28, 28), (512, 14, 14), (1024, 7, 7)]
    assert tuple(stem.shape[1:]) == (64, 112, 112)
    assert model.out_channels == 1024


def test_default_outputs_last_stage_only():
    model = MobileNetV1().eval()
    with torch.no_grad():
        outs = model(torch.randn(2, 3, 64, 64))
    assert len(outs) == 1 and tuple(outs[0].shape) == (2, 1024, 2, 2)


def test_out_indices_order_and_negative_indices():
    model = MobileNetV1(widen_factor=0.25, out_indices=(-1, 1)).eval()
    assert model.out_indices == (1, 3)
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [64, 256]


def test_parameter_count_matches_the_paper_layers():
    model = MobileNetV1()
    expected = expected_num_params(STEM, BLOCKS)
    assert num_params(model) == expected
    assert 3.2e6 < expected < 3.22e6  # the published ~3.21 M (no classifier)
    # Thirteen separable blocks plus the stem conv, BN + ReLU after each of
    # the 27 convolutions, and no conv biases.
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 1 + 2 * len(BLOCKS)
    assert all(conv.bias is None for conv in convs)
    depthwise = [c for c in convs if c.kernel_size == (3, 3)][1:]
    assert [(c.groups, c.stride[0]) for c in depthwise] == [
        (c_in, s) for c_in, _, s in BLOCKS]
    assert sum(isinstance(m, _BatchNorm) for m in model.modules()) == 27


def test_widen_factor_quarter():
    model = MobileNetV1(widen_factor=0.25, out_indices=(0, 1, 2, 3)).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 224, 224))
    assert [tuple(o.shape[1:]) for o in outs] == [
        (32, 56, 56), (64, 28, 28), (128, 14, 14), (256, 7, 7)]
    assert model.out_channels == 256

    def scaled(c):  # every channel count of the 0.25 net is a multiple of 8
        return c // 4

    blocks = [(scaled(i), scaled(o), s) for i, o, s in BLOCKS]
    assert num_params(model) == expected_num_params(
        (3, scaled(32)), blocks)


def test_widen_factor_rounds_to_multiples_of_eight():
    model = MobileNetV1(widen_factor=0.3)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(c.out_channels % 8 == 0 for c in convs)
    assert model.out_channels == 304  # make_divisible(307.2, 8)


@pytest.mark.parametrize('frozen_stages', [0, 2, 4])
def test_frozen_stages(frozen_stages):
    model = MobileNetV1(
        widen_factor=0.25, out_indices=(0, 1, 2, 3),
        frozen_stages=frozen_stages)
    model.train()
    frozen = STAGES[:frozen_stages + 1]
    for name in STAGES:
        stage = getattr(model, name)
        grads = {p.requires_grad for p in stage.parameters()}
        norms = {m.training for m in stage.modules()
                 if isinstance(m, _BatchNorm)}
        if name in frozen:
            assert grads == {False} and norms == {False}, name
        else:
            assert grads == {True} and norms == {True}, name

    # Frozen BN statistics stay put through a training forward.
    stem_bn = model.stem[0].bn
    before = stem_bn.running_mean.clone()
    model(torch.randn(2, 3, 64, 64))
    assert torch.equal(stem_bn.running_mean, before)
    # And eval()/train() round trips keep them frozen.
    model.eval().train()
    assert not stem_bn.training
    assert not any(p.requires_grad for p in model.stem.parameters())


def test_no_frozen_stages_by_default_and_norm_eval():
    model = MobileNetV1(widen_factor=0.25).train()
    assert all(p.requires_grad for p in model.parameters())
    assert all(m.training for m in model.modules())
    model = MobileNetV1(widen_factor=0.25, norm_eval=True).train()
    assert all(p.requires_grad for p in model.parameters())
    assert not any(
        m.training for m in model.modules() if isinstance(m, _BatchNorm))


@pytest.mark.parametrize('kwargs', [
    dict(out_indices=(4, )),
    dict(out_indices=(-5, )),
    dict(out_indices=()),
    dict(out_indices=(1, 1)),
    dict(out_indices=(3, -1)),
    dict(out_indices=(1.0, )),
    dict(out_indices='3'),
    dict(out_indices=None),
    dict(widen_factor=0),
    dict(widen_factor=-0.5),
    dict(widen_factor='1'),
    dict(frozen_stages=5),
    dict(frozen_stages=-2),
])
def test_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        MobileNetV1(**kwargs)


def test_int_out_indices():
    assert MobileNetV1(widen_factor=0.25, out_indices=2).out_indices == (2, )


def test_init_weights():
    model = MobileNetV1(widen_factor=0.25)
    model.init_weights()
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
    # Kaiming normal (fan_out, ReLU): std sqrt(2 / fan_out).
    conv = model.layer4[1].pointwise_conv.conv
    fan_out = conv.out_channels
    assert abs(conv.weight.std().item() - math.sqrt(2 / fan_out)) < 0.01


def classifier_cfg(backbone_type, width=1.0):
    in_channels = 1024 if width == 1.0 else 256
    return dict(
        type='ImageClassifier',
        backbone=dict(type=backbone_type, widen_factor=width),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(
            type='LinearClsHead', num_classes=10, in_channels=in_channels))


def test_registered_in_cls_kd_scope():
    assert MODELS.get('MobileNetV1') is MobileNetV1
    model = MODELS.build(dict(type='MobileNetV1', widen_factor=0.25))
    assert isinstance(model, MobileNetV1)


@pytest.mark.parametrize('scope', ['mmpretrain', 'cls_kd'])
def test_builds_from_mmpretrain_registry(scope):
    with DefaultScope.overwrite_default_scope(scope):
        model = MMPRETRAIN_MODELS.build(classifier_cfg('cls_kd.MobileNetV1'))
    assert isinstance(model.backbone, MobileNetV1)
    assert num_params(model.backbone) == expected_num_params(STEM, BLOCKS)
    model.eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 64, 64), mode='tensor')
    assert tuple(logits.shape) == (2, 10)


def test_trains_one_step():
    torch.manual_seed(0)
    model = MODELS.build(classifier_cfg('MobileNetV1'))
    model.init_weights()
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    data = dict(
        inputs=[torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
                for _ in range(4)],
        data_samples=[DataSample().set_gt_label(i) for i in range(4)])
    data = model.data_preprocessor(data, True)
    losses = model(**data, mode='loss')
    loss = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(loss)
    optimizer.zero_grad()
    loss.backward()
    grads = [p.grad for p in model.backbone.layer4.parameters()]
    assert all(g is not None for g in grads)
    assert all(g.abs().sum() > 0 for g in grads)
    before = model.backbone.layer4[1].pointwise_conv.conv.weight.clone()
    optimizer.step()
    after = model.backbone.layer4[1].pointwise_conv.conv.weight
    assert not torch.equal(before, after)
