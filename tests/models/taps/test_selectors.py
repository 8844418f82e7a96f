import pytest
import torch
import torch.nn as nn

import cls_kd
from cls_kd.models.taps import (
    TAP_SELECTORS,
    SelectorContext,
    Tap,
    TapSet,
    register_selector,
)

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
    return TAP_SELECTORS.get(name)(value, ctx, **options)


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


@pytest.fixture
def scaled_selector():
    """A selector registered for one test: output times ``factor`` plus the
    module call's keyword ``shift``."""

    @register_selector('scaled_for_test')
    def scaled(value, ctx, factor=1.0):
        return value * factor + ctx.kwargs['shift']

    yield scaled
    TAP_SELECTORS.module_dict.pop('scaled_for_test')


class Shifted(nn.Module):

    def forward(self, x, shift=0.0):
        return x


def test_registered_selector_gets_options_and_call_kwargs(scaled_selector):
    assert TAP_SELECTORS.get('scaled_for_test') is scaled_selector
    model = nn.Sequential()
    model.add_module('inner', Shifted())
    taps = TapSet([
        Tap('t', model.inner, 'student', '',
            selector=dict(type='scaled_for_test', factor=3.0))
    ])
    taps.install()
    taps.enable()
    model.inner(torch.ones(2), shift=0.5)
    assert torch.equal(taps.collect()['t'], torch.full((2, ), 3.5))


def test_register_selector_refuses_taken_names(scaled_selector):
    with pytest.raises(KeyError, match='already registered'):
        register_selector('scaled_for_test')(lambda value, ctx: value)
    with pytest.raises(KeyError, match='already registered'):
        register_selector('patch_tokens')(lambda value, ctx: value)
    assert TAP_SELECTORS.get('patch_tokens').__name__ == \
        'select_patch_tokens'


def test_builtin_selectors_are_in_the_registry():
    assert {'output', 'cls_token', 'dist_token', 'patch_tokens',
            'patch_map', 'index', 'attn_probs'} <= set(
                TAP_SELECTORS.module_dict)
    assert TAP_SELECTORS.scope == 'cls_kd'


def test_unknown_selector_option_fails_at_build():
    with pytest.raises(TypeError, match="'index' does not take options "
                       r"\['idx'\]"):
        Tap('h', nn.Sequential(nn.Identity()), 'student', '0',
            selector=dict(type='index', idx=0))
