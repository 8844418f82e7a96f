import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import DefaultScope
from mmpretrain.models.backbones import (
    DistilledVisionTransformer,
    VisionTransformer,
)
from mmpretrain.models.utils import MultiheadAttention
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS

import cls_kd
from cls_kd.models.backbones import (
    MHCADistilledVisionTransformer,
    MHCAVisionTransformer,
    MultiheadConvAttention,
)
from cls_kd.models.backbones.mhca import kernel_offsets
from cls_kd.registry import MODELS

cls_kd.register_all_modules()

# 4 heads (2 x 2 kernel); 32 x 32 images in 8 x 8 patches: a 4 x 4 grid.
ARCH = dict(embed_dims=32, num_layers=3, num_heads=4, feedforward_channels=64)
ADDED = {
    f'layers.{i}.attn.{name}'
    for i in range(2) for name in ('pos_proj.weight', 'pos_proj.bias',
                                   'gating')
}


def mhca_as_conv(kernel, bias):
    """An MHCA whose head at kernel position (i, j) (head i * k + j) copies
    the input channels as its value and ``proj`` applies the kernel's
    weight at (i, j); positional attention dominating."""
    c_out, c_in, k, _ = kernel.shape
    heads = k * k
    dims = heads * c_in  # head_dims = c_in
    mhca = MultiheadConvAttention(
        dims, heads, num_prefix_tokens=1, locality_strength=50.,
        gating_init=20.)
    with torch.no_grad():
        mhca.qkv.weight[2 * dims:] = 0
        mhca.qkv.bias[2 * dims:] = 0
        mhca.proj.weight.zero_()
        mhca.proj.bias.zero_()
        mhca.proj.bias[:c_out] = bias
        for h in range(heads):
            i, j = divmod(h, k)
            for c in range(c_in):
                mhca.qkv.weight[2 * dims + h * c_in + c, c] = 1
            mhca.proj.weight[:c_out, h * c_in:(h + 1) * c_in] = kernel[:, :,
                                                                       i, j]
    return mhca.eval()


@pytest.mark.parametrize('k', [2, 3])
def test_local_init_with_dominant_position_is_a_replicate_padded_conv(k):
    torch.manual_seed(0)
    c_in, side = 3, 5
    kernel = torch.randn(4, c_in, k, k)
    bias = torch.randn(4)
    mhca = mhca_as_conv(kernel, bias)
    x = torch.randn(2, 1 + side * side, k * k * c_in)

    image = x[:, 1:, :c_in].transpose(1, 2).reshape(2, c_in, side, side)
    before = (k - 1) // 2  # offsets {0, 1} for k = 2, {-1, 0, 1} for k = 3
    padded = F.pad(image, (before, k - 1 - before) * 2, mode='replicate')
    expected = F.conv2d(padded, kernel, bias)

    out = mhca(x)[:, 1:, :4].transpose(1, 2).reshape(2, 4, side, side)
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)


def test_gated_off_position_is_mmpretrain_attention():
    torch.manual_seed(0)
    kwargs = dict(qkv_bias=False, layer_scale_init_value=0.5)
    mhca = MultiheadConvAttention(
        16, 4, num_prefix_tokens=2, gating_init=-1e4, **kwargs).eval()
    reference = MultiheadAttention(16, 4, **kwargs).eval()
    result = reference.load_state_dict(mhca.state_dict(), strict=False)
    assert set(result.unexpected_keys) == {
        'pos_proj.weight', 'pos_proj.bias', 'gating'
    }
    x = torch.randn(2, 2 + 9, 16)
    torch.testing.assert_close(mhca(x), reference(x))


def test_prefix_rows_are_content_only_and_prefix_keys_get_no_position():
    torch.manual_seed(0)
    n, side, alpha = 2, 4, 1.5
    mhca = MultiheadConvAttention(
        16, 4, num_prefix_tokens=n, locality_strength=alpha)
    x = torch.randn(2, n + side * side, 16)
    attn = mhca.attention_map(x)

    q, k, _ = (x @ mhca.qkv.weight.T + mhca.qkv.bias).reshape(
        2, -1, 3, 4, 4).permute(2, 0, 3, 1, 4)
    content = (q @ k.transpose(-2, -1) / 2).softmax(-1)  # head_dims 4
    g = torch.sigmoid(torch.tensor(1.0))  # gating_init
    ys, xs = torch.meshgrid(
        torch.arange(side), torch.arange(side), indexing='ij')
    dx = xs.flatten()[None, :] - xs.flatten()[:, None]
    dy = ys.flatten()[None, :] - ys.flatten()[:, None]
    # 2 x 2 kernel: head i * 2 + j at (dx, dy) = (j, i).
    position = torch.stack([
        (-alpha * ((dx - j)**2 + (dy - i)**2)).float().softmax(-1)
        for i in range(2) for j in range(2)
    ])

    with torch.no_grad():
        torch.testing.assert_close(attn[:, :, :n], content[:, :, :n])
        torch.testing.assert_close(attn[:, :, n:, :n],
                                   (1 - g) * content[:, :, n:, :n])
        torch.testing.assert_close(
            attn[:, :, n:, n:],
            (1 - g) * content[:, :, n:, n:] + g * position)
        torch.testing.assert_close(attn.sum(-1), torch.ones(2, 4, n + 16))


def test_compiles_without_graph_breaks():
    mhca = MultiheadConvAttention(16, 4, num_prefix_tokens=1).eval()
    x = torch.randn(1, 1 + 9, 16)
    compiled = torch.compile(mhca, backend='eager', fullgraph=True)
    torch.testing.assert_close(compiled(x), mhca(x))


def test_head_counts_that_are_not_squares():
    """DeiT's 3, 6 and 12 heads: the most central offsets of the
    smallest kernel holding them, distinct, nearest the centre first."""
    assert kernel_offsets(3) == [(0, 0), (1, 0), (0, 1)]
    assert kernel_offsets(6) == [(0, 0), (0, -1), (-1, 0), (1, 0), (0, 1),
                                 (-1, -1)]
    twelve = kernel_offsets(12)
    assert len(set(twelve)) == 12
    # The whole 3x3 kernel, then (2, 0), (0, 2) and (2, 1) of the 4x4 one.
    assert twelve[:9] == sorted(kernel_offsets(9),
                                key=lambda o: (o[0]**2 + o[1]**2, o[1], o[0]))
    assert twelve[9:] == [(2, 0), (0, 2), (2, -1)]
    assert kernel_offsets(9) == [(dx, dy) for dy in (-1, 0, 1)
                                 for dx in (-1, 0, 1)]
    mhca = MultiheadConvAttention(24, 3, locality_strength=2.0)
    w = mhca.pos_proj.weight.detach()
    # Head 1 focuses on (dx, dy) = (1, 0): weights (2a*1, 2a*0, -a).
    torch.testing.assert_close(w[1], torch.tensor([4.0, 0.0, -2.0]))
    with pytest.raises(ValueError, match='num_heads >= 1'):
        kernel_offsets(0)


def build(cls, **kwargs):
    torch.manual_seed(0)
    return cls(
        arch=ARCH, img_size=32, patch_size=8, layer_scale_init_value=0.1,
        **kwargs)


def test_distilled_backbone_keys_shapes_and_plain_checkpoint():
    plain = build(DistilledVisionTransformer)
    mhca = build(
        MHCADistilledVisionTransformer,
        mhca_layers=2,
        mhca_cfg=dict(gating_init=-1e4))
    plain.eval()  # mmpretrain's backbones' train() returns None
    mhca.eval()
    assert all(mhca.layers[i].attn.num_prefix_tokens == 2 for i in range(2))
    assert type(mhca.layers[2].attn) is MultiheadAttention
    assert set(mhca.state_dict()) == set(plain.state_dict()) | ADDED
    assert 'layers.0.attn.gamma1.weight' in mhca.state_dict()

    result = mhca.load_state_dict(plain.state_dict(), strict=False)
    assert set(result.missing_keys) == ADDED
    assert not result.unexpected_keys
    # Positional attention gated off: the same network as the plain one.
    x = torch.randn(2, 3, 32, 32)
    for got, expected in zip(mhca(x)[0], plain(x)[0]):
        assert got.shape == expected.shape == (2, 32)
        torch.testing.assert_close(got, expected)


def test_backbone_argument_and_input_errors():
    with pytest.raises(ValueError, match='mhca_layers=4, but the backbone '
                       'has 3 layers'):
        build(MHCAVisionTransformer, mhca_layers=4)
    with pytest.raises(TypeError, match=r"\['num_heads'\]"):
        build(MHCAVisionTransformer, mhca_cfg=dict(num_heads=9))
    # DeiT-Ti's 3 heads build (a partial 2x2 kernel, see kernel_offsets).
    deit_tiny = MHCAVisionTransformer(arch='deit-tiny', img_size=32,
                                      patch_size=8, mhca_layers=1)
    assert deit_tiny.layers[0].attn.num_heads == 3
    model = build(MHCAVisionTransformer, mhca_layers=1)
    with pytest.raises(ValueError, match='21 tokens .* 20 patch tokens'):
        model(torch.randn(1, 3, 32, 40))  # a 4 x 5 grid


def test_local_init_survives_init_weights():
    model = build(
        MHCAVisionTransformer,
        mhca_layers=3,
        mhca_cfg=dict(locality_strength=2.0),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=.02))
    qkv = model.layers[0].attn.qkv.weight.clone()
    model.init_weights()
    assert not torch.equal(model.layers[0].attn.qkv.weight, qkv)
    expected = torch.tensor([[0., 0., -2.], [4., 0., -2.], [0., 4., -2.],
                             [4., 4., -2.]])
    for i in range(3):
        torch.testing.assert_close(model.layers[i].attn.pos_proj.weight,
                                   expected)
        assert not model.layers[i].attn.pos_proj.bias.any()


def test_gradients_reach_pos_proj_and_gating_and_freezing_covers_them():
    model = build(MHCAVisionTransformer, mhca_layers=2, out_type='featmap')
    out = model(torch.randn(2, 3, 32, 32))[0]
    assert out.shape == (2, 32, 4, 4)
    out.square().sum().backward()
    for i in range(2):
        attn = model.layers[i].attn
        assert attn.pos_proj.weight.grad.abs().sum() > 0
        assert attn.gating.grad.abs().sum() > 0

    frozen = build(MHCAVisionTransformer, mhca_layers=2, frozen_stages=1)
    assert not frozen.layers[0].attn.gating.requires_grad
    assert frozen.layers[1].attn.gating.requires_grad


def test_builds_from_config_in_the_cls_kd_scope():
    cfg = dict(
        type='MHCAVisionTransformer',
        arch=ARCH,
        img_size=32,
        patch_size=8,
        mhca_layers=1)
    assert isinstance(MODELS.build(cfg), MHCAVisionTransformer)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        with pytest.raises(KeyError):
            MMPRETRAIN_MODELS.build(cfg)
        model = MMPRETRAIN_MODELS.build(
            dict(
                type='ImageClassifier',
                _scope_='cls_kd',
                backbone=cfg,
                head=dict(type='ClsHead')))
    assert type(model.backbone) is MHCAVisionTransformer
    assert isinstance(model.backbone, VisionTransformer)
    assert isinstance(model.backbone.layers[0].attn, MultiheadConvAttention)
