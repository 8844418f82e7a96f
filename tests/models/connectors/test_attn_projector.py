import re

import pytest
import torch
import torch.nn as nn

import cls_kd
from cls_kd.models.connectors import AttnDistillProjector
from cls_kd.registry import MODELS

cls_kd.register_all_modules()


def test_layers_and_widths():
    layers = list(AttnDistillProjector(6, 10).layers)
    assert [type(m) for m in layers] == [
        nn.LayerNorm, nn.Linear, nn.GELU, nn.Linear, nn.GELU, nn.Linear,
        nn.GELU, nn.Linear, nn.LayerNorm
    ]
    linears = [(m.in_features, m.out_features) for m in layers
               if isinstance(m, nn.Linear)]
    assert linears == [(6, 12), (12, 6), (6, 12), (12, 10)]
    norms = [(m.normalized_shape, m.eps) for m in layers
             if isinstance(m, nn.LayerNorm)]
    assert norms == [((6, ), 1e-6), ((10, ), 1e-6)]
    wide = [(m.in_features, m.out_features)
            for m in AttnDistillProjector(6, 10, hidden_ratio=3).layers
            if isinstance(m, nn.Linear)]
    assert wide == [(6, 18), (18, 6), (6, 18), (18, 10)]


def test_init_statistics():
    torch.manual_seed(0)
    projector = AttnDistillProjector(192, 384)
    for m in projector.layers:
        if isinstance(m, nn.Linear):
            assert m.weight.std().item() == pytest.approx(0.02, rel=0.03)
            assert abs(m.weight.mean().item()) < 1e-3
            assert torch.count_nonzero(m.bias) == 0
        elif isinstance(m, nn.LayerNorm):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)


def test_projecting_cls_alone_equals_projecting_all_tokens():
    torch.manual_seed(0)
    projector = AttnDistillProjector(8, 12)
    tokens = torch.randn(2, 5, 8)
    all_tokens = projector(tokens)
    assert all_tokens.shape == (2, 5, 12)
    torch.testing.assert_close(projector(tokens[:, 0]), all_tokens[:, 0])


def test_output_is_layer_normalised():
    # LayerNorm(d_t, eps 1e-6) with its initial affine (1, 0) last: zero
    # mean per token and variance v / (v + eps), v the pre-norm variance
    # (std 0.02 layers leave v small, so the eps shows).
    torch.manual_seed(0)
    projector = AttnDistillProjector(384, 768)
    x = torch.randn(4, 384) * 3
    out = projector(x)
    v = projector.layers[:-1](x).double().var(-1, unbiased=False)
    torch.testing.assert_close(out.mean(-1), torch.zeros(4), atol=1e-5,
                               rtol=0)
    torch.testing.assert_close(out.double().var(-1, unbiased=False),
                               v / (v + 1e-6), atol=1e-4, rtol=0)


def test_gradient_reaches_every_parameter():
    projector = AttnDistillProjector(8, 12)
    projector(torch.randn(3, 8)).pow(2).mul(torch.randn(3, 12)).sum(
    ).backward()
    for name, p in projector.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize('shape', [(2, 5, 6), (8, ), (2, 3, 4, 8)])
def test_shape_error(shape):
    with pytest.raises(ValueError, match=re.escape(
            f'expects a CLS token (B, 8) or tokens (B, N, 8), got {shape}')):
        AttnDistillProjector(8, 12)(torch.zeros(shape))


@pytest.mark.parametrize('ratio', [0, -1, 1.5])
def test_invalid_hidden_ratio(ratio):
    with pytest.raises(ValueError, match='hidden_ratio must be a positive'):
        AttnDistillProjector(8, 12, hidden_ratio=ratio)


def test_build_from_registry():
    projector = MODELS.build(
        dict(type='AttnDistillProjector', in_channels=384, out_channels=768))
    assert isinstance(projector, AttnDistillProjector)
    assert projector(torch.zeros(2, 384)).shape == (2, 768)
