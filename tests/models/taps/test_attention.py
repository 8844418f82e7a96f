"""attn_probs against each attention class's own softmax.

The reference probabilities are recorded from the module's own forward (its
softmax module, the input of its attention dropout, or mmpretrain's explicit
``scaled_dot_product_attention_pyimpl``), never recomputed by the adapter's
code.
"""
import pytest
import torch
import torch.nn as nn
from mmpretrain.models.utils import attention as mm_attention
from timm.layers import Attention as TimmAttention
from torch.overrides import TorchFunctionMode

import cls_kd
from cls_kd.models.taps import Tap, TapSet
from cls_kd.models.taps.attention import attention_probs
from cls_kd.registry import MODELS

cls_kd.register_all_modules()

ATOL = dict(atol=1e-6, rtol=0)


def randomized(module, std=0.3):
    """Every parameter (biases, relative position tables, norms) random."""
    torch.manual_seed(0)
    for param in module.parameters():
        nn.init.normal_(param, 0.0, std)
    module.eval()
    return module


def tap_probs(module, call, path='', **options):
    """``call()`` with an attn_probs tap on ``module.get_submodule(path)``;
    returns (probabilities, output of call)."""
    taps = TapSet([
        Tap('p', module, 'teacher', path,
            selector=dict(type='attn_probs', **options))
    ])
    taps.install()
    taps.enable()
    with torch.no_grad():
        out = call()
    probs = taps.collect()['p']
    taps.remove()
    return probs, out


def record_input(module):
    """Forward pre-hook appending the first input of ``module`` to a list."""
    inputs = []
    module.register_forward_pre_hook(lambda m, a: inputs.append(a[0]))
    return inputs


def record_softmax(monkeypatch):
    """Record every ``torch.softmax`` call (mmpretrain's pyimpl uses it)."""
    outputs = []
    softmax = torch.softmax

    def recording(*args, **kwargs):
        outputs.append(softmax(*args, **kwargs))
        return outputs[-1]

    monkeypatch.setattr(torch, 'softmax', recording)
    return outputs


@pytest.mark.parametrize('qk_scale', [None, 0.1])
def test_mmpretrain_multihead_attention(qk_scale, monkeypatch):
    attn = randomized(
        mm_attention.MultiheadAttention(16, 4, qk_scale=qk_scale))
    x = torch.randn(2, 7, 16)
    probs, out = tap_probs(attn, lambda: attn(x))
    assert probs.shape == (2, 4, 7, 7) and probs.dtype == torch.float32
    # The module's output is what these probabilities produce.
    v = attn.qkv(x).reshape(2, 7, 3, 4, 4)[:, :, 2].transpose(1, 2)
    mixed = (probs @ v).transpose(1, 2).reshape(2, 7, 16)
    torch.testing.assert_close(attn.proj(mixed), out, rtol=1e-5, atol=1e-5)
    if qk_scale is None:  # the same math through mmpretrain's explicit path
        monkeypatch.setattr(attn, 'scaled_dot_product_attention',
                            mm_attention.scaled_dot_product_attention_pyimpl)
    reference = record_softmax(monkeypatch)
    with torch.no_grad():
        attn(x)
    torch.testing.assert_close(probs, reference[0], **ATOL)


@pytest.mark.parametrize('bias', ['qv_bias', True, False])
def test_beit_attention(bias):
    attn = randomized(
        mm_attention.BEiTAttention(
            16, 4, window_size=(2, 3), use_rel_pos_bias=True, bias=bias))
    reference = record_input(attn.attn_drop)
    x = torch.randn(2, 7, 16)
    shared = torch.randn(4, 7, 7)
    probs, _ = tap_probs(attn, lambda: attn(x, rel_pos_bias=shared))
    assert probs.shape == (2, 4, 7, 7)
    torch.testing.assert_close(probs, reference[0], **ATOL)
    # Both biases count: leaving out the shared one changes the result.
    alone = attention_probs(attn, (x, ), {})
    assert (alone - probs).abs().max() > 1e-2


def test_beit_layer_in_beit_vit_gets_the_shared_bias_by_keyword():
    backbone = randomized(
        MODELS.build(
            dict(
                type='BEiTViT',
                arch=dict(
                    embed_dims=16,
                    num_layers=2,
                    num_heads=2,
                    feedforward_channels=32),
                img_size=16,
                patch_size=4,
                use_rel_pos_bias=False,
                use_shared_rel_pos_bias=True)))
    attn = backbone.layers[1].attn
    assert attn.relative_position_bias_table is None
    reference = record_input(attn.attn_drop)
    calls = []
    attn.register_forward_pre_hook(
        lambda m, a, kw: calls.append((a, kw)), with_kwargs=True)
    x = torch.randn(2, 3, 16, 16)
    probs, _ = tap_probs(backbone, lambda: backbone(x), 'layers.1.attn')
    assert probs.shape == (2, 2, 17, 17)
    torch.testing.assert_close(probs, reference[0], **ATOL)
    args, kwargs = calls[0]
    assert kwargs['rel_pos_bias'].shape == (2, 17, 17)
    without = attention_probs(attn, args, {})
    assert (without - probs).abs().max() > 1e-2


def shift_window_msa():
    return randomized(
        mm_attention.ShiftWindowMSA(
            embed_dims=16, num_heads=2, window_size=3, shift_size=1))


def test_window_msa_with_the_shift_mask():
    module = shift_window_msa()
    reference = []
    module.w_msa.softmax.register_forward_hook(
        lambda m, a, o: reference.append(o))
    calls = []
    module.w_msa.register_forward_pre_hook(
        lambda m, a, kw: calls.append((a, kw)), with_kwargs=True)
    x = torch.randn(2, 36, 16)
    probs, _ = tap_probs(module, lambda: module(x, (6, 6)), 'w_msa')
    # 2 images x 4 windows of 3 x 3 tokens.
    assert probs.shape == (8, 2, 9, 9)
    torch.testing.assert_close(probs, reference[0], **ATOL)
    # The shift mask (-100 across regions) reached the selector and bites.
    args, kwargs = calls[0]
    assert kwargs['mask'].shape == (4, 9, 9) and (kwargs['mask'] < 0).any()
    assert (probs < 1e-30).any()
    unmasked = attention_probs(module.w_msa, args, {})
    assert (unmasked - probs).abs().max() > 1e-2


@pytest.mark.parametrize('hw, shift', [((6, 6), 1), ((3, 4), 1), ((6, 6), 0)])
def test_tap_on_shift_window_msa_equals_its_w_msa(hw, shift):
    """(3, 4): padded, and no shift since the map is one window high."""
    module = shift_window_msa()
    module.shift_size = shift
    reference = []
    module.w_msa.softmax.register_forward_hook(
        lambda m, a, o: reference.append(o))
    x = torch.randn(2, hw[0] * hw[1], 16)
    probs, _ = tap_probs(module, lambda: module(x, hw))
    torch.testing.assert_close(probs, reference[0], **ATOL)


def timm_attention(fused):
    attn = randomized(
        TimmAttention(16, num_heads=4, qkv_bias=True, qk_norm=True,
                      norm_layer=nn.LayerNorm))
    for norm in (attn.q_norm, attn.k_norm):
        nn.init.normal_(norm.weight, 1.0, 0.5)
    attn.fused_attn = fused
    return attn


def timm_masks(num_tokens):
    torch.manual_seed(1)
    allowed = torch.rand(num_tokens, num_tokens) > 0.5
    allowed.fill_diagonal_(True)
    return {
        'none': {},
        'bool': dict(attn_mask=allowed),
        'float': dict(attn_mask=torch.randn(num_tokens, num_tokens)),
        'causal': dict(is_causal=True),
    }


@pytest.mark.parametrize('mask', ['none', 'bool', 'float', 'causal'])
@pytest.mark.parametrize('fused', [False, True])
def test_timm_attention(fused, mask):
    x = torch.randn(2, 7, 16)
    kwargs = timm_masks(7)[mask]
    explicit = timm_attention(False)
    reference = record_input(explicit.attn_drop)
    with torch.no_grad():
        explicit(x, **kwargs)
    attn = timm_attention(fused)
    probs, _ = tap_probs(attn, lambda: attn(x, **kwargs))
    assert probs.shape == (2, 4, 7, 7)
    torch.testing.assert_close(probs, reference[0], **ATOL)


def test_query_rows_and_cls_row():
    attn = timm_attention(True)
    x = torch.randn(2, 7, 16)
    full, _ = tap_probs(attn, lambda: attn(x, is_causal=True))
    for query, expected in [('cls', full[:, :, 0]), (3, full[:, :, 3]),
                            (-1, full[:, :, 6]),
                            ([4, 1], full[:, :, [4, 1]])]:
        probs, _ = tap_probs(attn, lambda: attn(x, is_causal=True),
                             query=query)
        assert probs.shape == expected.shape
        torch.testing.assert_close(probs, expected, **ATOL)


class ShapeLog(TorchFunctionMode):
    """Shapes of every tensor produced inside the mode."""

    def __init__(self):
        super().__init__()
        self.shapes = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for value in out if isinstance(out, (tuple, list)) else (out, ):
            if isinstance(value, torch.Tensor):
                self.shapes.append(tuple(value.shape))
        return out


def attention_cases():
    """(module, args, kwargs, tokens, first-row query) for each class."""
    torch.manual_seed(2)
    window = shift_window_msa().w_msa
    beit = randomized(
        mm_attention.BEiTAttention(
            16, 4, window_size=(2, 3), use_rel_pos_bias=True))
    return [
        (randomized(mm_attention.MultiheadAttention(16, 4)),
         (torch.randn(2, 7, 16), ), {}, 7, 'cls'),
        (beit, (torch.randn(2, 7, 16), ),
         dict(rel_pos_bias=torch.randn(4, 7, 7)), 7, 'cls'),
        (window, (torch.randn(8, 9, 16), ),
         dict(mask=torch.randn(4, 9, 9)), 9, 0),
        (timm_attention(True), (torch.randn(2, 7, 16), ),
         dict(attn_mask=torch.rand(7, 7) > 0.2, is_causal=False), 7, 'cls'),
        (timm_attention(True), (torch.randn(2, 7, 16), ),
         dict(is_causal=True), 7, 'cls'),
    ]


@pytest.mark.parametrize(
    'case',
    range(5),
    ids=['mmpretrain-mha', 'beit', 'window-msa', 'timm-mask', 'timm-causal'])
def test_first_row_never_forms_the_token_by_token_matrix(case):
    module, args, kwargs, n, query = attention_cases()[case]
    with torch.no_grad():
        full = attention_probs(module, args, kwargs)
        log = ShapeLog()
        with log:
            row = attention_probs(module, args, kwargs, query=query)
        full_log = ShapeLog()
        with full_log:
            attention_probs(module, args, kwargs)
    assert row.shape == full.shape[:2] + (n, )
    torch.testing.assert_close(row, full[:, :, 0], **ATOL)
    assert not [s for s in log.shapes if s[-2:] == (n, n)]
    # The log does see N x N tensors when the full matrix is asked for.
    assert [s for s in full_log.shapes if s[-2:] == (n, n)]


class CustomAttention(nn.Module):

    def __init__(self):
        super().__init__()
        self.num_heads = 2
        self.qkv = nn.Linear(8, 24)

    def forward(self, x):
        return x


class OverridingAttention(TimmAttention):

    def forward(self, x, attn_mask=None, is_causal=False):
        return super().forward(x * 2)


class InheritingAttention(TimmAttention):
    pass


@pytest.mark.parametrize('module_type', [CustomAttention, OverridingAttention])
def test_unknown_attention_classes_are_refused_at_build(module_type):
    module = module_type() if module_type is CustomAttention else module_type(
        8, num_heads=2)
    model = nn.Sequential(module)
    with pytest.raises(TypeError) as info:
        Tap('a', model, 'teacher', '0', selector='attn_probs')
    message = str(info.value)
    assert f'no adapter for {__name__}.{module_type.__name__}' in message
    assert "Tap 'a' on teacher, module '0'" in message
    assert 'timm.layers.attention.Attention' in message
    assert 'mmpretrain.models.utils.attention.WindowMSA' in message


def test_subclass_keeping_the_forward_is_accepted():
    attn = randomized(InheritingAttention(16, num_heads=4, qkv_bias=True))
    reference = record_input(attn.attn_drop)
    attn.fused_attn = False
    x = torch.randn(2, 7, 16)
    probs, _ = tap_probs(attn, lambda: attn(x))
    torch.testing.assert_close(probs, reference[0], **ATOL)


def test_instances_that_cannot_be_reproduced_are_refused():
    attn = mm_attention.MultiheadAttention(16, 4)
    attn.scaled_dot_product_attention = lambda q, k, v, dropout_p: v
    with pytest.raises(TypeError, match='whose scale is unknown'):
        Tap('a', attn, 'teacher', '', selector='attn_probs')
    v2 = mm_attention.ShiftWindowMSA(
        16, 2, 3, window_msa=mm_attention.WindowMSAV2)
    with pytest.raises(TypeError, match='w_msa of ShiftWindowMSA is a '
                       'WindowMSAV2, not a supported WindowMSA'):
        Tap('a', v2, 'teacher', '', selector='attn_probs')


@pytest.mark.parametrize('query', ['all', True, [], [0, 'cls'], 1.0])
def test_bad_query_is_refused_at_build(query):
    attn = TimmAttention(8, num_heads=2)
    with pytest.raises(ValueError, match="query must be None, 'cls'"):
        Tap('a', attn, 'teacher', '',
            selector=dict(type='attn_probs', query=query))


def test_window_attention_has_no_cls_row():
    with pytest.raises(ValueError, match='no class token; use query=0'):
        Tap('a', shift_window_msa(), 'teacher', 'w_msa',
            selector=dict(type='attn_probs', query='cls'))


def test_query_row_out_of_range():
    attn = TimmAttention(8, num_heads=2)
    with pytest.raises(ValueError, match=r'rows \[5\] out of range for 5'):
        tap_probs(attn, lambda: attn(torch.randn(1, 5, 8)), query=5)
