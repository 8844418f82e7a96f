import numpy as np
import pytest
import torch
import torch.nn.functional as F

import cls_kd
from cls_kd.models.connectors import (
    MapPool,
    MapResize,
    MapToTokens,
    TokensToMap,
)
from cls_kd.models.losses import FeatureMSELoss
from cls_kd.registry import MODELS

cls_kd.register_all_modules()


def feats(*shape, seed=0):
    return torch.from_numpy(
        np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def test_tokens_to_map_places_tokens_row_major_after_prefix():
    x = feats(2, 1 + 6, 3)
    out = TokensToMap(num_prefix_tokens=1, hw=(2, 3))(x)
    assert out.shape == (2, 3, 2, 3)
    for b in range(2):
        for i in range(2):
            for j in range(3):
                assert torch.equal(out[b, :, i, j], x[b, 1 + i * 3 + j])


def test_round_trips():
    tokens = feats(2, 16, 5)
    assert torch.equal(MapToTokens()(TokensToMap()(tokens)), tokens)
    fmap = feats(2, 5, 3, 4)
    assert torch.equal(TokensToMap(hw=(3, 4))(MapToTokens()(fmap)), fmap)


def test_prefix_tokens_are_dropped():
    patches = feats(2, 9, 4)
    with_prefix = torch.cat([torch.full((2, 2, 4), 99.), patches], dim=1)
    out = TokensToMap(num_prefix_tokens=2)(with_prefix)
    assert torch.equal(out, TokensToMap()(patches))
    assert (out != 99).all()


def test_tokens_to_map_errors():
    with pytest.raises(ValueError,
                       match=r'TokensToMap: 197 tokens do not form a square '
                       r'grid; give hw=\(H, W\).*num_prefix_tokens=1'):
        TokensToMap()(torch.zeros(1, 197, 4))
    with pytest.raises(ValueError, match=r'hw=\(3, 3\) does not fit 8'):
        TokensToMap(hw=3)(torch.zeros(1, 8, 4))
    with pytest.raises(ValueError, match=r'expects tokens \(B, N, C\)'):
        TokensToMap()(torch.zeros(1, 4, 2, 2))
    with pytest.raises(ValueError, match='leaves no patch tokens'):
        TokensToMap(num_prefix_tokens=4)(torch.zeros(1, 4, 2))
    with pytest.raises(ValueError, match=r'expects a map \(B, C, H, W\)'):
        MapToTokens()(torch.zeros(1, 4, 2))
    with pytest.raises(ValueError, match='num_prefix_tokens must be'):
        TokensToMap(num_prefix_tokens=-1)


@pytest.mark.parametrize('mode,align_corners', [('bilinear', False),
                                                ('bilinear', True),
                                                ('bicubic', False),
                                                ('nearest', False),
                                                ('area', False)])
def test_map_resize_equals_interpolate(mode, align_corners):
    x = feats(2, 3, 7, 5)
    out = MapResize((4, 6), mode=mode, align_corners=align_corners)(x)
    kwargs = dict(align_corners=align_corners) if mode in (
        'bilinear', 'bicubic') else {}
    expected = F.interpolate(x, size=(4, 6), mode=mode, **kwargs)
    assert out.shape == (2, 3, 4, 6)
    torch.testing.assert_close(out, expected)


def test_map_resize_hand_values_and_identity():
    x = torch.arange(4.).view(1, 1, 2, 2)
    # Nearest upsampling by 2 repeats each value in a 2x2 block.
    expected = torch.tensor([[0., 0., 1., 1.], [0., 0., 1., 1.],
                             [2., 2., 3., 3.], [2., 2., 3., 3.]])
    out = MapResize(4, mode='nearest')(x)
    assert torch.equal(out[0, 0], expected)
    assert MapResize(2)(x) is x
    assert list(MapResize(2).parameters()) == []


def test_map_pool_values():
    x = feats(2, 3, 4, 6)
    avg = MapPool(2)(x)
    # Block means computed directly: 2x3 cells per output position.
    for i in range(2):
        for j in range(2):
            cell = x[:, :, 2 * i:2 * i + 2, 3 * j:3 * j + 3]
            torch.testing.assert_close(avg[:, :, i, j], cell.mean((2, 3)))
    torch.testing.assert_close(
        MapPool((3, 5), mode='max')(x), F.adaptive_max_pool2d(x, (3, 5)))
    torch.testing.assert_close(
        MapPool((3, 5))(x), F.adaptive_avg_pool2d(x, (3, 5)))


def test_resize_and_pool_errors():
    with pytest.raises(ValueError, match='TokensToMap first'):
        MapResize(4)(torch.zeros(1, 16, 8))
    with pytest.raises(ValueError, match=r'MapPool expects a map'):
        MapPool(4)(torch.zeros(1, 8))
    with pytest.raises(ValueError, match='mode must be one of'):
        MapResize(4, mode='linear')
    with pytest.raises(ValueError, match='align_corners=True needs'):
        MapResize(4, mode='nearest', align_corners=True)
    with pytest.raises(ValueError, match="mode must be one of \\('avg'"):
        MapPool(4, mode='min')
    with pytest.raises(ValueError, match='size must be a positive int'):
        MapPool((4, 0))


def test_build_by_name_and_chain_into_a_feature_loss():
    to_map = MODELS.build(dict(type='TokensToMap', num_prefix_tokens=1))
    pool = MODELS.build(dict(type='MapPool', size=2))
    resize = MODELS.build(dict(type='MapResize', size=2, mode='area'))
    assert isinstance(MODELS.build(dict(type='MapToTokens')), MapToTokens)
    s_tokens = feats(2, 1 + 16, 8).requires_grad_()  # ViT: cls + 4x4
    t_map = feats(2, 8, 8, 8, seed=1)  # CNN: 8x8
    loss = FeatureMSELoss()(pool(to_map(s_tokens)), resize(t_map))
    loss.backward()
    assert s_tokens.grad[:, 0].abs().sum() == 0  # class token not used
    assert s_tokens.grad[:, 1:].abs().sum() > 0
