"""ScaleKD's cross-attention projector: an independent re-computation on
fixed weights, the presets' shapes, and its errors."""
import math

import pytest
import torch

import cls_kd
from cls_kd.models.connectors import CrossAttentionProjector
from cls_kd.registry import MODELS

cls_kd.register_all_modules()


def _randomise(cap, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in cap.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        if isinstance(cap.stem_norm, torch.nn.BatchNorm2d):
            cap.stem_norm.running_mean.copy_(
                torch.randn(cap.in_channels, generator=g))
            cap.stem_norm.running_var.copy_(
                torch.rand(cap.in_channels, generator=g) + 0.5)
    return cap


def _linear(x, layer):
    return x @ layer.weight.T + layer.bias


def _layer_norm(x, ln):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu)**2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias


def _reference(cap, x, query=None, train=False):
    """The projector written out: explicit conv, norm, softmax attention."""
    x = torch.nn.functional.conv2d(x, cap.stem_conv.weight,
                                   cap.stem_conv.bias, padding=1)
    if cap.stem_norm_type == 'BN':
        bn = cap.stem_norm
        if train:
            mean = x.mean((0, 2, 3))
            var = x.var((0, 2, 3), unbiased=False)
        else:
            mean, var = bn.running_mean, bn.running_var
        x = (x - mean[:, None, None]) / torch.sqrt(var[:, None, None] +
                                                   bn.eps)
        x = x * bn.weight[:, None, None] + bn.bias[:, None, None]
    else:
        x = _layer_norm(x.permute(0, 2, 3, 1),
                        cap.stem_norm).permute(0, 3, 1, 2)
    x = torch.relu(x) + cap.pos_embed
    tokens = x.flatten(2).transpose(1, 2)  # B, HW, C_s
    b = x.shape[0]
    if query is None:
        query = cap.query.unsqueeze(0).expand(b, -1, -1)
    query = torch.relu(_linear(query, cap.query_proj))
    q, k, v = (_linear(query, cap.q), _linear(tokens, cap.k),
               _linear(tokens, cap.v))
    h, c = cap.num_heads, cap.out_channels
    d = c // h
    heads = []
    for i in range(h):
        sl = slice(i * d, (i + 1) * d)
        logits = q[..., sl] @ k[..., sl].transpose(1, 2)
        attn = torch.softmax(logits * cap.gamma / math.sqrt(c / h), dim=-1)
        heads.append(attn @ v[..., sl])
    out = _linear(torch.cat(heads, dim=-1), cap.proj)  # no residual
    out = _layer_norm(out, cap.norm)
    hidden = torch.relu(_linear(out, cap.ffn[0]))
    return out + _linear(hidden, cap.ffn[2])  # residual: the LN output


@pytest.mark.parametrize('train', [False, True])
def test_matches_reference_bn_stem_learnable_queries(train):
    cap = _randomise(CrossAttentionProjector(
        in_channels=6, out_channels=8, num_heads=2, gamma=2.5,
        in_size=(3, 4), query_size=(2, 3)))
    cap.train(train)
    x = torch.randn(3, 6, 3, 4)
    expected = _reference(cap, x, train=train)
    out = cap(x)
    assert out.shape == (3, 6, 8)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    # gamma is in the logits: another gamma gives another output.
    cap.gamma = 1.0
    assert not torch.allclose(cap(x), expected, atol=1e-3)


def test_matches_reference_ln_stem_given_queries_and_layouts():
    cap = _randomise(CrossAttentionProjector(
        in_channels=4, out_channels=6, num_heads=3, gamma=0.2, in_size=4,
        stem_norm='LN', learnable_query=False), seed=1)
    x = torch.randn(2, 4, 4, 4)
    query = torch.randn(2, 4, 6)  # a 2x2 grid of queries
    expected = _reference(cap, x, query)
    torch.testing.assert_close(cap(x, query), expected, rtol=1e-5,
                               atol=1e-5)
    # Tokens in, map queries in: the same function.
    tokens = x.flatten(2).transpose(1, 2)
    query_map = query.transpose(1, 2).reshape(2, 6, 2, 2)
    torch.testing.assert_close(cap(tokens, query_map), expected, rtol=1e-5,
                               atol=1e-5)


def test_biases_are_used():
    cap = _randomise(CrossAttentionProjector(
        in_channels=4, out_channels=4, num_heads=2, in_size=2,
        query_size=2))
    x = torch.randn(2, 4, 2, 2)
    before = cap(x)
    # (The key bias adds q.b_k to every logit of a query: softmax ignores
    # it, so it is checked by the reference test only.)
    for layer in (cap.q, cap.v, cap.proj, cap.query_proj):
        with torch.no_grad():
            saved = layer.bias.clone()
            layer.bias.zero_()
            assert not torch.allclose(cap(x), before, atol=1e-4), layer
            layer.bias.copy_(saved)


# (preset, teacher grid of the stage-3 queries, teacher channels): the
# pairings of configs/scalekd at a 16th of the widths.
PAIRINGS = [(arch, None, None) for arch in CrossAttentionProjector.arch_zoo]
PAIRINGS += [(f'{s}-{stage}', 16, 1024) for s in ('resnet50', )
             for stage in ('s3', 's4')]


@pytest.mark.parametrize('arch,grid,teacher_channels', PAIRINGS)
def test_preset_shapes(arch, grid, teacher_channels):
    preset = CrossAttentionProjector.arch_zoo[arch]
    c_s = preset['in_channels'] // 16
    c_t = (teacher_channels or preset['out_channels']) // 16
    heads = 8 if teacher_channels else preset['num_heads']
    c_t = max(c_t, heads) // heads * heads
    query = (grid, grid) if grid else preset['query_size']
    kwargs = dict(arch=arch, in_channels=c_s, out_channels=c_t,
                  num_heads=heads, query_size=query)
    cap = CrossAttentionProjector(**kwargs)
    h, w = cap.in_size
    given = None if cap.learnable_query else torch.randn(
        2, query[0] * query[1], c_t)
    out = cap(torch.randn(2, c_s, h, w), given)
    assert out.shape == (2, query[0] * query[1], c_t)
    # The stage-3 presets learn their queries on the teacher's stage-3 grid;
    # the stage-4 ones take them from the TPP path.
    assert cap.learnable_query == arch.endswith('-s3')
    assert (cap.query is None) == arch.endswith('-s4')


def test_paper_presets():
    zoo = CrossAttentionProjector.arch_zoo
    assert zoo['resnet50-s3'] == dict(
        in_channels=1024, out_channels=768, num_heads=16, gamma=5.,
        in_size=(14, 14), query_size=(14, 14), stem_norm='BN')
    assert zoo['resnet50-s4']['in_channels'] == 2048
    assert zoo['resnet50-s4']['num_heads'] == 24
    assert zoo['swin-t-s3']['stem_norm'] == 'LN'
    assert zoo['swin-t-s4']['num_heads'] == 48
    assert zoo['convnext-t-s4']['gamma'] == 1.0
    # ResNet-50's four projectors: ~176 M parameters (the paper's figure).
    total = sum(
        sum(p.numel() for p in CrossAttentionProjector(arch=a).parameters())
        for a in ('resnet50-s3', 'resnet50-s3', 'resnet50-s4',
                  'resnet50-s4'))
    assert 170e6 < total < 180e6, total


def test_errors_name_the_fix():
    with pytest.raises(ValueError, match='does not divide'):
        CrossAttentionProjector(in_channels=4, out_channels=6, num_heads=4,
                                in_size=2, query_size=2)
    with pytest.raises(ValueError, match='unknown arch'):
        CrossAttentionProjector(arch='resnet51-s3')
    with pytest.raises(ValueError, match='query_size'):
        CrossAttentionProjector(in_channels=4, out_channels=4, num_heads=2,
                                in_size=2)
    cap = CrossAttentionProjector(in_channels=4, out_channels=4,
                                  num_heads=2, in_size=2,
                                  learnable_query=False)
    with pytest.raises(ValueError, match=r'tpp\(cap3'):
        cap(torch.randn(1, 4, 2, 2))
    with pytest.raises(ValueError, match=r'\(B, 4, 2, 2\)'):
        cap(torch.randn(1, 4, 3, 3), torch.randn(1, 4, 4))


def test_builds_from_registry():
    cap = MODELS.build(dict(type='CrossAttentionProjector',
                            arch='swin-t-s4', in_channels=8,
                            out_channels=16, num_heads=4))
    assert cap.in_size == (7, 7) and cap.stem_norm_type == 'LN'
