"""ScaleKD's dual-view feature mimicking against independent computations
(NumPy, SciPy's DCT)."""
import re

import numpy as np
import pytest
import torch
from scipy.fft import dctn, idctn

from cls_kd.models.distillers import DistillerConfigError
from cls_kd.models.losses import DualViewMimicLoss, remove_direct


def _fixed(*shape, seed=0):
    return torch.from_numpy(
        np.random.default_rng(seed).normal(size=shape).astype(np.float32))


def _dct_without_direct(x):
    """DCT-II over (H, W) of each channel, (0, 0) coefficient zeroed,
    inverse DCT (SciPy, orthonormal)."""
    coeffs = dctn(x, type=2, axes=(-2, -1), norm='ortho')
    coeffs[..., 0, 0] = 0
    return idctn(coeffs, type=2, axes=(-2, -1), norm='ortho')


@pytest.mark.parametrize('hw', [(7, 7), (4, 6), (16, 16)])
def test_removing_the_direct_component_is_the_dct_path(hw):
    x = _fixed(2, 5, *hw, seed=1)
    expected = _dct_without_direct(x.double().numpy())
    np.testing.assert_allclose(remove_direct(x).numpy(), expected,
                               atol=1e-5)
    # Tokens (B, N, C) in row-major order: the same operation.
    tokens = x.flatten(2).transpose(1, 2)
    np.testing.assert_allclose(
        remove_direct(tokens).transpose(1, 2).reshape(x.shape).numpy(),
        expected, atol=1e-5)


def _np_loss(preds, targets, view):
    """Maps (B, C, H, W) in NumPy: normalise each position's channel
    vector, sum the squared differences, divide by B."""
    p, t = preds.double().numpy(), targets.double().numpy()
    if view == 'frequency':
        p, t = _dct_without_direct(p), _dct_without_direct(t)
    total = 0.0
    b, _, h, w = p.shape
    for i in range(b):
        for y in range(h):
            for x in range(w):
                u, v = p[i, :, y, x], t[i, :, y, x]
                u = u / max(np.linalg.norm(u), 1e-12)
                v = v / max(np.linalg.norm(v), 1e-12)
                total += ((u - v)**2).sum()
    return total / b


@pytest.mark.parametrize('view', ['spatial', 'frequency'])
def test_values_match_numpy(view):
    preds, targets = _fixed(3, 6, 7, 7, seed=2), _fixed(3, 6, 7, 7, seed=3)
    loss = DualViewMimicLoss(view=view, loss_weight=0.08)
    expected = 0.08 * _np_loss(preds, targets, view)
    assert loss(preds, targets).item() == pytest.approx(expected, rel=1e-5)
    # Tokens in row-major order give the same value.
    as_tokens = [x.flatten(2).transpose(1, 2) for x in (preds, targets)]
    assert loss(*as_tokens).item() == pytest.approx(expected, rel=1e-5)


def test_views_differ_and_targets_get_no_gradient():
    preds = _fixed(2, 4, 3, 3, seed=4).requires_grad_()
    targets = _fixed(2, 4, 3, 3, seed=5).requires_grad_()
    spatial = DualViewMimicLoss('spatial')(preds, targets)
    frequency = DualViewMimicLoss('frequency')(preds, targets)
    assert spatial.item() != pytest.approx(frequency.item(), rel=1e-3)
    (spatial + frequency).backward()
    assert targets.grad is None
    assert preds.grad.abs().sum() > 0
    # A feature equal to the teacher's up to a per-channel offset matches
    # it exactly in the frequency view only.
    shifted = targets.detach() + torch.randn(2, 4, 1, 1)
    assert DualViewMimicLoss('frequency')(shifted, targets).item() < 1e-10
    assert DualViewMimicLoss('spatial')(shifted, targets).item() > 1e-2


def test_errors():
    with pytest.raises(ValueError, match='view'):
        DualViewMimicLoss(view='dct')
    with pytest.raises(DistillerConfigError, match=re.escape(
            'loss_weight must be a finite number >= 0, got nan.')):
        DualViewMimicLoss(loss_weight=float('nan'))
    with pytest.raises(ValueError, match='student'):
        DualViewMimicLoss()(torch.zeros(2, 49, 8), torch.zeros(2, 49, 16))
    with pytest.raises(ValueError, match='tokens'):
        DualViewMimicLoss()(torch.zeros(2, 8), torch.zeros(2, 8))
