import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import cls_kd
from cls_kd.models.distillers import DistillerConfigError
from cls_kd.models.losses import (
    AttnDistillAlignLoss,
    AttnDistillAttentionLoss,
    attn_distill_attention_loss,
)
from cls_kd.models.losses.attn_distill import resize_attention_row
from cls_kd.registry import MODELS

cls_kd.register_all_modules()


def rows(batch, heads, length, seed, scale=2.0):
    """Attention rows (B, H, L) summing to 1: softmax of random logits."""
    logits = np.random.default_rng(seed).standard_normal(
        (batch, heads, length)) * scale
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return torch.from_numpy((e / e.sum(-1, keepdims=True)).astype(np.float32))


def peaky_rows(batch, heads, side, seed):
    """Rows (B, H, 1 + side²) with almost all mass on one interior patch."""
    logits = np.random.default_rng(seed).standard_normal(
        (batch, heads, 1 + side * side)) * 0.1
    logits[:, :, 1 + 3 * side + 4] += 12.0  # patch (3, 4)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return torch.from_numpy((e / e.sum(-1, keepdims=True)).astype(np.float32))


def np_softmax(v):
    e = np.exp(v - v.max())
    return e / e.sum()


def reference_resize(t, num_patches, guard_low=None, aggregate=False):
    """The teacher rows on the student grid, as the published code computes
    them: torch's bicubic (the definition) for the resampling, the rescale
    to 1 - c per row in float64. With ``guard_low``, a row the published
    loss turns into NaN (a negative entry followed by the log of the
    aggregation, or a NaN entry) has its resampled part clamped first."""
    B, H, L = t.shape
    src, dst = math.isqrt(L - 1), math.isqrt(num_patches)
    grid = torch.from_numpy(t[:, :, 1:].reshape(B, H, src, src))
    patch = F.interpolate(grid, size=(dst, dst), mode='bicubic',
                          align_corners=False).reshape(B, H, -1).numpy()
    out = np.empty((B, H, 1 + num_patches))
    for b in range(B):
        for h in range(H):
            c, part = t[b, h, 0], patch[b, h]
            row = part * (1 - c) / part.sum()
            nan = np.isnan(row).any() or (aggregate and (
                (row < 0).any() or np.isinf(row).any()))
            if guard_low is not None and nan:
                part = np.maximum(part, guard_low)
                row = part * (1 - c) / part.sum()
            out[b, h, 0] = c
            out[b, h, 1:] = row
    return out


def reference_aggregate(a, tau):
    B, H, L = a.shape
    out = np.empty((B, 1, L))
    for b in range(B):
        logits = np.zeros(L)
        for h in range(H):
            logits += np.log(a[b, h])
        out[b, 0] = np_softmax(logits / tau)
    return out


def reference_attention_loss(attn_s, attn_t, tau=10.0, clamp=(1e-5, 0.996),
                             safe=True, aggregate=None, loss_weight=1.0):
    s, t = attn_s.double().numpy(), attn_t.double().numpy()
    if aggregate is None:
        aggregate = s.shape[1] != t.shape[1]
    if t.shape[2] != s.shape[2]:
        t = reference_resize(t, s.shape[2] - 1, clamp[0] if safe else None,
                             aggregate)
    if aggregate:
        s, t = reference_aggregate(s, tau), reference_aggregate(t, tau)
    total = 0.0
    for b in range(s.shape[0]):
        for h in range(s.shape[1]):
            p_s = np.clip(s[b, h], *clamp)
            p_t = np.clip(t[b, h], *clamp)
            p_s, p_t = p_s / p_s.sum(), p_t / p_t.sum()
            for j in range(s.shape[2]):
                total += p_t[j] * (np.log(p_t[j]) - np.log(p_s[j]))
    return loss_weight * total / s.shape[0]


CASES = {
    # student (B, H_s, L_s), teacher (B, H_t, L_t)
    'same shape': ((2, 3, 17), (2, 3, 17)),
    'resize 64 -> 16': ((2, 3, 17), (2, 3, 65)),
    'resize 16 -> 64': ((2, 3, 65), (2, 3, 17)),
    'aggregate 6 -> 3 heads': ((2, 3, 17), (2, 6, 17)),
    'resize and aggregate': ((2, 3, 17), (2, 6, 65)),
}


@pytest.mark.parametrize('case', list(CASES))
def test_attention_loss_matches_numpy(case):
    shape_s, shape_t = CASES[case]
    attn_s, attn_t = rows(*shape_s, seed=1), rows(*shape_t, seed=2)
    loss = AttnDistillAttentionLoss(loss_weight=1.0)(attn_s, attn_t)
    expected = reference_attention_loss(attn_s, attn_t)
    assert loss.dtype == torch.float32 and loss.dim() == 0
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-5)


def test_aggregation_is_a_sum_over_heads_with_tau():
    attn_s, attn_t = rows(2, 3, 17, seed=3), rows(2, 6, 17, seed=4)
    loss = AttnDistillAttentionLoss(loss_weight=1.0, tau=4.0)(attn_s, attn_t)
    np.testing.assert_allclose(
        loss.item(), reference_attention_loss(attn_s, attn_t, tau=4.0),
        rtol=1e-5)
    # Equal head counts: no aggregation unless asked for.
    attn_t = rows(2, 3, 17, seed=5)
    forced = AttnDistillAttentionLoss(1.0, aggregate=True)(attn_s, attn_t)
    np.testing.assert_allclose(
        forced.item(),
        reference_attention_loss(attn_s, attn_t, aggregate=True), rtol=1e-5)
    plain = AttnDistillAttentionLoss(1.0)(attn_s, attn_t)
    assert not torch.allclose(forced, plain)


def test_clamp_range_is_configurable():
    attn_s, attn_t = rows(2, 3, 17, seed=6, scale=4), rows(2, 3, 65, seed=7)
    loss = AttnDistillAttentionLoss(1.0, clamp=(1e-3, 0.5))(attn_s, attn_t)
    expected = reference_attention_loss(attn_s, attn_t, clamp=(1e-3, 0.5))
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-5)
    assert not np.isclose(expected, reference_attention_loss(attn_s, attn_t))


def official_attention_loss(attn_s, attn_t, interpolate, aggregation,
                            attn_T=10.0):
    """The published AttnDistill attention term (weight 1), transcribed step
    by step from wangkai930418/attndistill@5a5f4e9
    engine/engine_dino_transfer.py:84-114 in float64 torch ops: bicubic
    resize of the teacher patches, rescale to 1 - c, log-sum over heads and
    softmax(/attn_T), clamp (1e-5, 0.996), L1-normalise, KL batchmean."""
    s, t = attn_s.double(), attn_t.double()
    B, H_t = t.shape[:2]
    if interpolate:
        side_t, side_s = math.isqrt(t.shape[2] - 1), math.isqrt(
            s.shape[2] - 1)
        t_cls = t[:, :, 0].unsqueeze(-1)
        t_patch = F.interpolate(
            t[:, :, 1:].reshape(B, H_t, side_t, side_t), size=side_s,
            mode='bicubic').reshape(B, H_t, -1)
        t_patch = t_patch * ((1 - t_cls) / t_patch.sum(-1).unsqueeze(-1))
        t = torch.cat((t_cls, t_patch), dim=-1)
    if aggregation:
        s = F.softmax(s.log().sum(dim=1) / attn_T, dim=-1)
        t = F.softmax(t.log().sum(dim=1) / attn_T, dim=-1)
    s = F.normalize(s.clamp(min=1e-5, max=0.996), p=1, dim=-1)
    t = F.normalize(t.clamp(min=1e-5, max=0.996), p=1, dim=-1)
    return F.kl_div(s.log(), t, reduction='batchmean').item()


# The released scripts: DINO ViT-S/8 -> ViT-S/16 (--interpolate, 6 heads
# both) and Mugs ViT-B/16 -> ViT-S/16 (--aggregation, 12 -> 6 heads), on a
# 28x28 -> 14x14 and a 14x14 grid; plus resize with aggregation, which no
# released script runs.
OFFICIAL_CASES = {
    'dino s8 -> s16, smooth': ((2, 6, 197), (2, 6, 785), 'smooth', True,
                               False),
    'dino s8 -> s16, peaky': ((2, 6, 197), (2, 6, 785), 'peaky', True,
                              False),
    'mugs b16 -> s16': ((2, 6, 197), (2, 12, 197), 'smooth', False, True),
    'mugs b16 -> s16, peaky': ((2, 6, 197), (2, 12, 197), 'peaky', False,
                               True),
    'resize and aggregate, smooth': ((2, 3, 17), (2, 6, 65), 'smooth', True,
                                     True),
}


def teacher_rows(shape, kind, seed):
    if kind == 'smooth':
        return rows(*shape, seed=seed, scale=0.3)
    return peaky_rows(shape[0], shape[1], math.isqrt(shape[2] - 1), seed)


@pytest.mark.parametrize('case', list(OFFICIAL_CASES))
def test_default_equals_the_official_loss_where_it_is_finite(case):
    shape_s, shape_t, kind, interpolate, aggregation = OFFICIAL_CASES[case]
    attn_s = rows(*shape_s, seed=30)
    attn_t = teacher_rows(shape_t, kind, seed=31)
    expected = official_attention_loss(attn_s, attn_t, interpolate,
                                       aggregation)
    assert math.isfinite(expected)
    for safe in (True, False):
        loss = AttnDistillAttentionLoss(1.0, safe_resize=safe)(attn_s,
                                                               attn_t)
        np.testing.assert_allclose(loss.item(), expected, rtol=1e-6)


def test_resize_only_peaky_teacher_is_not_clamped_before_rescale():
    # The case the earlier default changed (DINO ViT-S/8 -> ViT-S/16): the
    # resampled row has negative entries, the official code rescales them
    # as they are and only the final clamp lifts them.
    attn_s = rows(2, 6, 197, seed=32)
    attn_t = peaky_rows(2, 6, 28, seed=33)
    resampled = reference_resize(attn_t.double().numpy(), 196)
    assert resampled[:, :, 1:].min() < 0
    official = official_attention_loss(attn_s, attn_t, True, False)
    clamped_first = attn_distill_attention_loss_clamped_first(attn_s, attn_t)
    assert not np.isclose(official, clamped_first, rtol=1e-4)
    loss = AttnDistillAttentionLoss(1.0)(attn_s, attn_t)
    np.testing.assert_allclose(loss.item(), official, rtol=1e-6)


def attn_distill_attention_loss_clamped_first(attn_s, attn_t):
    """The earlier default: every resampled row clamped to >= 1e-5 before
    its rescale."""
    s, t = attn_s.double().numpy(), attn_t.double().numpy()
    B, H, L = t.shape
    src, dst = math.isqrt(L - 1), math.isqrt(s.shape[2] - 1)
    patch = F.interpolate(torch.from_numpy(t[:, :, 1:]).reshape(
        B, H, src, src), size=(dst, dst), mode='bicubic',
        align_corners=False).reshape(B, H, -1).numpy()
    patch = np.maximum(patch, 1e-5)
    c = t[:, :, :1]
    t = np.concatenate([c, patch * (1 - c) / patch.sum(-1, keepdims=True)],
                       -1)
    p_s = np.clip(s, 1e-5, 0.996)
    p_t = np.clip(t, 1e-5, 0.996)
    p_s /= p_s.sum(-1, keepdims=True)
    p_t /= p_t.sum(-1, keepdims=True)
    return float((p_t * (np.log(p_t) - np.log(p_s))).sum() / B)


def test_guard_acts_only_where_the_official_loss_is_nan():
    # Resize + aggregation of a peaky teacher: the official loss is NaN
    # (log of a negative entry); the default is finite and equals the
    # reference that clamps only the rows that are NaN.
    attn_s, attn_t = rows(2, 3, 17, seed=8), peaky_rows(2, 6, 8, seed=9)
    assert reference_resize(attn_t.double().numpy(), 16).min() < 0
    with np.errstate(invalid='ignore'):
        assert math.isnan(official_attention_loss(attn_s, attn_t, True,
                                                  True))
        assert np.isnan(
            reference_attention_loss(attn_s, attn_t, safe=False))
    published = AttnDistillAttentionLoss(
        1.0, safe_resize=False)(attn_s, attn_t)
    assert torch.isnan(published)
    safe = AttnDistillAttentionLoss(1.0)(attn_s, attn_t)
    assert torch.isfinite(safe)
    np.testing.assert_allclose(
        safe.item(), reference_attention_loss(attn_s, attn_t), rtol=1e-5)
    # One sample smooth, one peaky: the smooth sample's share of the loss
    # is the official one; the guard changes only the peaky sample.
    smooth = rows(1, 6, 65, seed=34, scale=0.3)
    mixed_t = torch.cat([smooth, attn_t[1:]])
    mixed = AttnDistillAttentionLoss(1.0)(attn_s, mixed_t).item()
    peaky_alone = AttnDistillAttentionLoss(1.0)(attn_s[1:],
                                                attn_t[1:]).item()
    official_smooth = official_attention_loss(attn_s[:1], smooth, True, True)
    np.testing.assert_allclose(2 * mixed - peaky_alone, official_smooth,
                               rtol=1e-5)


def test_guard_changes_nothing_for_a_smooth_teacher():
    attn_s = rows(2, 3, 17, seed=12)
    attn_t = rows(2, 6, 65, seed=13, scale=0.3)
    resampled = reference_resize(attn_t.double().numpy(), 16)
    assert resampled.min() > 1e-5
    safe = AttnDistillAttentionLoss(1.0)(attn_s, attn_t)
    published = AttnDistillAttentionLoss(
        1.0, safe_resize=False)(attn_s, attn_t)
    assert torch.equal(safe, published)


def test_resized_teacher_keeps_its_cls_entry_and_sums_to_one():
    attn_t = peaky_rows(2, 6, 8, seed=14)
    out = resize_attention_row(attn_t, 16, min_value=1e-5, aggregate=True)
    assert out.shape == (2, 6, 17)
    torch.testing.assert_close(out[..., 0], attn_t[..., 0])
    torch.testing.assert_close(out.sum(-1), torch.ones(2, 6))
    assert out.min() > 0


@pytest.mark.parametrize('case', ['same shape', 'resize and aggregate'])
def test_gradient_reaches_student_only(case):
    shape_s, shape_t = CASES[case]
    logits_s = torch.randn(shape_s, requires_grad=True)
    attn_t = rows(*shape_t, seed=15).requires_grad_()
    AttnDistillAttentionLoss()(logits_s.softmax(-1), attn_t).backward()
    assert attn_t.grad is None
    assert torch.isfinite(logits_s.grad).all()
    assert logits_s.grad.abs().sum() > 0


def test_loss_weight_scales_and_defaults():
    attn_s, attn_t = rows(2, 3, 17, seed=16), rows(2, 6, 65, seed=17)
    base = attn_distill_attention_loss(attn_s, attn_t)
    torch.testing.assert_close(
        AttnDistillAttentionLoss(loss_weight=0.5)(attn_s, attn_t), 0.5 * base)
    loss = AttnDistillAttentionLoss()
    assert (loss.loss_weight, loss.tau, loss.clamp, loss.safe_resize,
            loss.aggregate) == (0.1, 10.0, (1e-5, 0.996), True, None)
    torch.testing.assert_close(loss(attn_s, attn_t), 0.1 * base)


def test_half_precision_computed_in_float32():
    attn_s = rows(2, 3, 17, seed=18).bfloat16()
    attn_t = rows(2, 6, 65, seed=19).bfloat16()
    loss = AttnDistillAttentionLoss(1.0)(attn_s, attn_t)
    assert loss.dtype == torch.float32
    np.testing.assert_allclose(
        loss.item(), reference_attention_loss(attn_s, attn_t), rtol=1e-5)


@pytest.mark.parametrize('shape_s, shape_t, match', [
    ((2, 3, 17, 17), (2, 3, 17), r"query='cls'"),
    ((2, 3, 17), (3, 3, 17), 'batch sizes differ'),
    ((2, 3, 17), (2, 3, 64), 'teacher patches: 63 tokens do not form a '
     'square grid'),
    ((2, 3, 16), (2, 3, 65), 'student patches: 15 tokens do not form a '
     'square grid'),
    ((2, 3, 1), (2, 3, 1), 'CLS entry and at least one patch'),
])
def test_attention_shape_errors(shape_s, shape_t, match):
    with pytest.raises(ValueError, match=match):
        AttnDistillAttentionLoss()(torch.rand(shape_s), torch.rand(shape_t))


def test_unequal_heads_need_aggregation():
    with pytest.raises(ValueError, match='head counts differ, student 3 vs '
                       'teacher 6, and aggregate=False'):
        AttnDistillAttentionLoss(aggregate=False)(rows(2, 3, 17, 0),
                                                  rows(2, 6, 17, 1))


@pytest.mark.parametrize('kwargs, match', [
    (dict(tau=0), 'tau must be a finite number > 0, got 0.'),
    (dict(loss_weight=float('nan')),
     'loss_weight must be a finite number >= 0, got nan.'),
    (dict(clamp=(0, 0.996)),
     'clamp[0] must be a finite number in (0, 1], got 0.'),
    (dict(clamp=(1e-5, float('inf'))),
     'clamp[1] must be a finite number in (0, 1], got inf.'),
    (dict(clamp=(0.5, 0.4)), 'clamp must be (low, high) with 0 < low'),
    (dict(clamp=(1e-5, )), 'clamp must be (low, high), got (1e-05,)'),
])
def test_invalid_options_rejected(kwargs, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        AttnDistillAttentionLoss(**kwargs)


def test_align_loss_weight_checked():
    with pytest.raises(DistillerConfigError, match=re.escape(
            'loss_weight must be a finite number >= 0, got -1.')):
        AttnDistillAlignLoss(loss_weight=-1)


def test_align_loss_is_mean_squared_error():
    rng = np.random.default_rng(20)
    preds = torch.from_numpy(rng.standard_normal((3, 8)).astype(np.float32))
    targets = torch.from_numpy(rng.standard_normal((3, 8)).astype(np.float32))
    p, t = preds.double().numpy(), targets.double().numpy()
    expected = 0.0
    for b in range(3):
        for k in range(8):
            expected += (p[b, k] - t[b, k])**2
    expected /= 3 * 8
    loss = AttnDistillAlignLoss()(preds, targets)
    assert loss.dtype == torch.float32 and loss.dim() == 0
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-5)
    np.testing.assert_allclose(
        AttnDistillAlignLoss(loss_weight=2.5)(preds, targets).item(),
        2.5 * expected, rtol=1e-5)


def test_align_gradient_reaches_student_only():
    preds = torch.randn(3, 8, requires_grad=True)
    targets = torch.randn(3, 8, requires_grad=True)
    AttnDistillAlignLoss()(preds, targets).backward()
    assert targets.grad is None
    torch.testing.assert_close(preds.grad,
                               2 * (preds - targets).detach() / 24)


@pytest.mark.parametrize('shape_s, shape_t, match', [
    ((3, 17, 8), (3, 8), r"selector='cls_token'"),
    ((3, 4), (3, 8), r'AttnDistillProjector\(in_channels=..., '
     r'out_channels=8\)'),
])
def test_align_shape_errors(shape_s, shape_t, match):
    with pytest.raises(ValueError, match=match):
        AttnDistillAlignLoss()(torch.zeros(shape_s), torch.zeros(shape_t))


def test_build_from_registry():
    align = MODELS.build(dict(type='AttnDistillAlignLoss', loss_weight=2.0))
    assert isinstance(align, AttnDistillAlignLoss)
    assert align.loss_weight == 2.0
    attn = MODELS.build(
        dict(type='AttnDistillAttentionLoss', loss_weight=0.2, tau=5.0,
             clamp=[1e-4, 0.99], safe_resize=False))
    assert isinstance(attn, AttnDistillAttentionLoss)
    assert (attn.loss_weight, attn.tau, attn.clamp, attn.safe_resize) == (
        0.2, 5.0, (1e-4, 0.99), False)
