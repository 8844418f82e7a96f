import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.models.utils import MultiheadAttention
from timm.layers import Attention

import cls_kd
from cls_kd.models.taps import TAP_SELECTORS, SelectorContext, Tap

cls_kd.register_all_modules()

B, C = 2, 3


def tokens(num_tokens):
    """Tokens whose value encodes (b, n, c): 100 * b + 10 * n + c."""
    b = torch.arange(B).view(B, 1, 1)
    n = torch.arange(num_tokens).view(1, num_tokens, 1)
    c = torch.arange(C).view(1, 1, C)
    return (100 * b + 10 * n + c).float()


def select(name, value, num_prefix_tokens, **options):
    ctx = SelectorContext(nn.Identity(), num_prefix_tokens)
    return TAP_SELECTORS[name](value, ctx, **options)


@pytest.mark.parametrize('prefix', [1, 2])
def test_cls_and_patch_tokens(prefix):
    x = tokens(prefix + 4)
    cls_token = select('cls_token', x, prefix)
    assert torch.equal(cls_token, torch.tensor([[0., 1., 2.],
                                                [100., 101., 102.]]))
    patches = select('patch_tokens', x, prefix)
    assert patches.shape == (B, 4, C)
    # First patch token of sample 1, channel 2.
    assert patches[1, 0, 2].item() == 100 + 10 * prefix + 2


def test_dist_token_is_token_one():
    dist = select('dist_token', tokens(6), 2)
    assert torch.equal(dist, torch.tensor([[10., 11., 12.],
                                           [110., 111., 112.]]))


def test_dist_token_needs_two_prefix_tokens():
    with pytest.raises(ValueError, match='distillation token'):
        select('dist_token', tokens(5), 1)


@pytest.mark.parametrize('prefix', [1, 2])
def test_patch_map_square_layout(prefix):
    # 4 patch tokens -> a 2 x 2 map; patch p = r * 2 + c sits at [r, c].
    patch_map = select('patch_map', tokens(prefix + 4), prefix)
    assert patch_map.shape == (B, C, 2, 2)
    first = 10 * prefix
    assert torch.equal(
        patch_map[0, 0],
        torch.tensor([[first, first + 10], [first + 20, first + 30]]).float())
    assert torch.equal(patch_map[1, 2],
                       patch_map[0, 0] + 100 + 2)


def test_patch_map_non_square_with_hw():
    prefix, (h, w) = 1, (2, 3)
    x = tokens(prefix + h * w)
    patch_map = select('patch_map', x, prefix, hw=(h, w))
    assert patch_map.shape == (B, C, h, w)
    for r in range(h):
        for c in range(w):
            assert torch.equal(patch_map[:, :, r, c], x[:, prefix + r * w + c])


def test_patch_map_errors():
    with pytest.raises(ValueError, match='square grid'):
        select('patch_map', tokens(1 + 6), 1)
    with pytest.raises(ValueError, match=r'hw=\(4, 2\) does not fit 6'):
        select('patch_map', tokens(1 + 6), 1, hw=(4, 2))


@pytest.mark.parametrize('name', ['cls_token', 'patch_tokens', 'patch_map'])
def test_token_selectors_reject_maps(name):
    with pytest.raises(ValueError, match=r'expects tokens \(B, N, C\), got '
                       r'\(2, 3, 4, 4\)'):
        select(name, torch.zeros(2, 3, 4, 4), 1)


def test_patch_tokens_need_prefix_count():
    with pytest.raises(ValueError, match='num_prefix_tokens'):
        select('patch_tokens', tokens(5), None)


def test_index():
    outs = (torch.zeros(1), torch.ones(1), torch.full((1, ), 2.))
    assert select('index', outs, None).item() == 2.
    assert select('index', outs, None, index=0).item() == 0.
    assert select('index', list(outs), None, index=1).item() == 1.
    with pytest.raises(ValueError, match='tuple/list output, got Tensor'):
        select('index', torch.zeros(1), None)


def reference_attention(x, weight, bias, num_heads, q_norm=None,
                        k_norm=None):
    """softmax(q k^T / sqrt(d)) and the value tokens, from the qkv weights."""
    batch, num_tokens, dim = x.shape
    head_dim = dim // num_heads
    qkv = x @ weight.t() + bias

    def heads(t):  # B, heads, N, head_dim
        return t.reshape(batch, num_tokens, num_heads,
                         head_dim).transpose(1, 2)

    q, k, v = (heads(qkv[..., i * dim:(i + 1) * dim]) for i in range(3))
    if q_norm is not None:
        q = F.layer_norm(q, (head_dim, ), q_norm.weight, q_norm.bias,
                         q_norm.eps)
        k = F.layer_norm(k, (head_dim, ), k_norm.weight, k_norm.bias,
                         k_norm.eps)
    probs = torch.softmax(q @ k.transpose(-2, -1) / head_dim**0.5, dim=-1)
    return probs, v


def mmpretrain_attention():
    return MultiheadAttention(embed_dims=16, num_heads=4), {}


def timm_attention():
    attn = Attention(16, num_heads=4, qkv_bias=True, qk_norm=True,
                     norm_layer=nn.LayerNorm)
    # Non-trivial q/k norms, so that forgetting them changes the result.
    for norm in (attn.q_norm, attn.k_norm):
        nn.init.normal_(norm.weight, 1.0, 0.5)
        nn.init.normal_(norm.bias, 0.0, 0.5)
    return attn, dict(q_norm=attn.q_norm, k_norm=attn.k_norm)


@pytest.mark.parametrize('make', [mmpretrain_attention, timm_attention])
def test_attn_probs_match_reference(make):
    torch.manual_seed(0)
    attn, norms = make()
    attn.eval()
    model = nn.Sequential(attn)
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        untapped = model(x)
        tap = Tap('attn', model, 'student', '0', selector='attn_probs')
        store = {'__enabled__': True}
        tap.install(store)
        tapped = model(x)
    probs = store['attn']
    expected, v = reference_attention(x, attn.qkv.weight, attn.qkv.bias, 4,
                                      **norms)
    assert probs.shape == (2, 4, 5, 5)
    torch.testing.assert_close(probs, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 4, 5))
    assert torch.equal(tapped, untapped)
    # The probabilities are the ones the module itself applies to v.
    mixed = (probs @ v).transpose(1, 2).reshape(2, 5, 16)
    torch.testing.assert_close(attn.proj(mixed), untapped, rtol=1e-5,
                               atol=1e-5)


def test_attn_probs_need_attention_module():
    ctx = SelectorContext(nn.Linear(4, 4), 1, (torch.zeros(1, 2, 4), ))
    with pytest.raises(ValueError, match='qkv and num_heads, got Linear'):
        TAP_SELECTORS['attn_probs'](torch.zeros(1, 2, 4), ctx)
