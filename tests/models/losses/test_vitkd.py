import re

import numpy as np
import pytest
import torch

from cls_kd.models.distillers import DistillerConfigError
from cls_kd.models.losses import (
    ViTKDGenerationLoss,
    ViTKDMimicLoss,
    vitkd_generation_loss,
    vitkd_mimic_loss,
)
from cls_kd.models.losses.vitkd import check_mask_ratio


def tokens(*shape, seed=0):
    return torch.from_numpy(
        np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def test_mimic_is_alpha_times_summed_squared_error_over_batch():
    s = [tokens(3, 4, 6, seed=1), tokens(3, 4, 6, seed=2)]
    t = [tokens(3, 4, 6, seed=3), tokens(3, 4, 6, seed=4)]
    expected = 0.0
    for a, b in zip(s, t):  # per element, in float64
        expected += float(((a.double().numpy() - b.double().numpy())**2).sum())
    expected = 3e-5 * expected / 3
    loss = ViTKDMimicLoss(alpha=3e-5)(s, t)
    assert loss.dtype == torch.float32 and loss.dim() == 0
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-5)
    # One block as a plain tensor.
    one = ViTKDMimicLoss(alpha=2.0)(s[0], t[0])
    np.testing.assert_allclose(one.item(), 2.0 * vitkd_mimic_loss(
        [s[0]], [t[0]]).item(), rtol=1e-6)


def test_mimic_is_not_a_mean():
    # Doubling the tokens (same per-token error) doubles the loss.
    s, t = tokens(2, 4, 8), torch.zeros(2, 4, 8)
    double_s = torch.cat([s, s], dim=1)
    double_t = torch.cat([t, t], dim=1)
    assert torch.allclose(
        vitkd_mimic_loss([double_s], [double_t]),
        2 * vitkd_mimic_loss([s], [t]))


def test_generation_sums_masked_positions_and_divides_by_lambda():
    preds, targets = tokens(2, 4, 3, seed=5), tokens(2, 4, 3, seed=6)
    mask = torch.tensor([[1., 0., 1., 0.], [0., 0., 1., 1.]])
    p, t, m = (x.double().numpy() for x in (preds, targets, mask))
    expected = 0.0
    for b in range(2):
        for n in range(4):
            if m[b, n]:
                expected += ((p[b, n] - t[b, n])**2).sum()
    expected = 3e-6 * expected / 2 / 0.5
    loss = ViTKDGenerationLoss(beta=3e-6, mask_ratio=0.5)(preds, targets,
                                                          mask)
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-5)
    # Changing a kept (unmasked) position changes nothing.
    changed = preds.clone()
    changed[0, 1] += 10
    assert torch.equal(
        vitkd_generation_loss(changed, targets, mask, 0.5),
        vitkd_generation_loss(preds, targets, mask, 0.5))


def test_generation_scales_with_one_over_lambda():
    preds, targets = tokens(1, 10, 3, seed=7), tokens(1, 10, 3, seed=8)
    mask = torch.zeros(1, 10)
    mask[0, :3] = 1  # lambda 0.3 masks 10 - floor(10 * 0.7) = 3 tokens
    a = ViTKDGenerationLoss(beta=1.0, mask_ratio=0.3)(preds, targets, mask)
    b = vitkd_generation_loss(preds, targets, mask, 1.0)
    np.testing.assert_allclose(a.item(), b.item() / 0.3, rtol=1e-6)


def test_generation_refuses_a_mask_of_another_ratio():
    preds = targets = torch.zeros(1, 4, 2)
    mask = torch.tensor([[1., 0., 0., 0.]])
    with pytest.raises(ValueError, match='hides 1 of 4 tokens but '
                       'mask_ratio=0.5 means 2; .* same mask_ratio'):
        ViTKDGenerationLoss(mask_ratio=0.5)(preds, targets, mask)


def test_mask_ratio_is_read_only_where_reading_is_free(monkeypatch):
    wrong = torch.tensor([[1., 0., 0., 0.]])
    # Not on a device (a meta tensor cannot be read: it would raise).
    check_mask_ratio(wrong.to('meta'), 0.5)
    # Not while compiling (a graph break).
    monkeypatch.setattr(torch.compiler, 'is_compiling', lambda: True)
    check_mask_ratio(wrong, 0.5)


def test_teacher_gets_no_gradient():
    s = tokens(2, 4, 3).requires_grad_()
    t = tokens(2, 4, 3, seed=9).requires_grad_()
    ViTKDMimicLoss()([s], [t]).backward()
    assert s.grad is not None and t.grad is None


@pytest.mark.parametrize('s_shape,t_shape,match', [
    ((2, 16, 8), (2, 4, 8), 'token grids differ.*4x4.*2x2'),
    ((2, 16, 8), (2, 16, 12), 'LinearConnector\\(in_channels=8, '
     'out_channels=12\\)'),
    ((2, 8, 4, 4), (2, 8, 4, 4), 'patch_tokens'),
])
def test_shape_errors_say_what_to_do(s_shape, t_shape, match):
    with pytest.raises(ValueError, match=match):
        ViTKDMimicLoss()([torch.zeros(s_shape)], [torch.zeros(t_shape)])


def test_block_count_mismatch_and_bad_weights():
    with pytest.raises(ValueError, match='2 student blocks vs 1 teacher'):
        ViTKDMimicLoss()([torch.zeros(1, 4, 2)] * 2, [torch.zeros(1, 4, 2)])
    with pytest.raises(DistillerConfigError, match=re.escape(
            'alpha must be a finite number > 0, got 0.')):
        ViTKDMimicLoss(alpha=0)
    with pytest.raises(DistillerConfigError, match=re.escape(
            'beta must be a finite number > 0, got nan.')):
        ViTKDGenerationLoss(beta=float('nan'))
    with pytest.raises(DistillerConfigError, match=re.escape(
            'mask_ratio must be a finite number in (0, 1), got 1.0.')):
        ViTKDGenerationLoss(mask_ratio=1.0)
