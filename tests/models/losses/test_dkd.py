import re

import numpy as np
import pytest
import torch

from cls_kd.models.distillers import DistillerConfigError
from cls_kd.models.losses import DKDLoss
from cls_kd.registry import MODELS

RNG = np.random.RandomState(1)
LOGITS_S = RNG.randn(3, 5) * 2
LOGITS_T = RNG.randn(3, 5) * 2
LABELS = np.array([0, 3, 4])


def softmax(v):
    e = np.exp(v - v.max())
    return e / e.sum()


def kl(p, q):
    return sum(p[i] * (np.log(p[i]) - np.log(q[i])) for i in range(len(p)))


def reference_dkd(z_s, z_t, labels, temperature, alpha, beta, loss_weight):
    tckd = nckd = 0.0
    for b, y in enumerate(labels):
        p_s = softmax(z_s[b] / temperature)
        p_t = softmax(z_t[b] / temperature)
        tckd += kl([p_t[y], 1 - p_t[y]], [p_s[y], 1 - p_s[y]])
        others = [c for c in range(z_s.shape[1]) if c != y]
        nckd += kl(softmax(z_t[b, others] / temperature),
                   softmax(z_s[b, others] / temperature))
    batch = len(labels)
    return (loss_weight * temperature**2 *
            (alpha * tckd / batch + beta * nckd / batch))


def run(loss, z_s, z_t, labels):
    return loss(torch.tensor(z_s), torch.tensor(z_t), torch.tensor(labels))


@pytest.mark.parametrize('temperature, alpha, beta, loss_weight',
                         [(1.0, 1.0, 0.5, 1.0), (4.0, 1.0, 8.0, 0.5),
                          (2.0, 0.3, 2.0, 2.0)])
def test_matches_numpy(temperature, alpha, beta, loss_weight):
    loss = run(
        DKDLoss(temperature, alpha, beta, loss_weight), LOGITS_S, LOGITS_T,
        LABELS)
    expected = reference_dkd(LOGITS_S, LOGITS_T, LABELS, temperature, alpha,
                             beta, loss_weight)
    assert loss.dim() == 0
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_accurate_when_student_target_probability_rounds_to_one():
    # The student's 1 - p_y ~ 1e-8 is below float32 resolution, so
    # log(1 - p_y) must not be taken from the probabilities; float64 NumPy
    # still resolves it.
    rng = np.random.RandomState(5)
    labels = np.array([1, 2])
    z_s = rng.randn(2, 5)
    z_s[[0, 1], labels] = 20.0
    z_t = rng.randn(2, 5)
    z_t[[0, 1], labels] = 1.5
    loss = run(
        DKDLoss(), z_s.astype(np.float32), z_t.astype(np.float32), labels)
    expected = reference_dkd(z_s, z_t, labels, 1.0, 1.0, 0.5, 1.0)
    assert loss.item() == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize('scale', [1e2, 1e4])
def test_extreme_logits_give_no_nan(scale):
    z_s = torch.tensor([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.5]]) * scale
    z_t = torch.tensor([[-1.0, 1.0, 0.0], [1.0, -1.0, 0.2]]) * scale
    z_s.requires_grad_()
    for labels in ([0, 1], [1, 0]):
        loss = DKDLoss(beta=8.0)(z_s, z_t, torch.tensor(labels))
        loss.backward()
        assert torch.isfinite(loss)
        assert torch.isfinite(z_s.grad).all()


def test_zero_when_student_equals_teacher():
    loss = run(DKDLoss(temperature=4.0), LOGITS_T, LOGITS_T, LABELS)
    assert loss.item() == pytest.approx(0.0, abs=1e-7)


def test_gradient_reaches_student_only():
    logits_s = torch.tensor(LOGITS_S, requires_grad=True)
    logits_t = torch.tensor(LOGITS_T, requires_grad=True)
    DKDLoss(temperature=2.0)(logits_s, logits_t, torch.tensor(LABELS))\
        .backward()
    assert logits_t.grad is None
    assert logits_s.grad.abs().sum() > 0


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r'\(3, 5\) and \(2, 5\)'):
        DKDLoss()(torch.zeros(3, 5), torch.zeros(2, 5), torch.zeros(3).long())


def test_bad_labels_rejected():
    with pytest.raises(ValueError, match=r'got \(2,\)'):
        DKDLoss()(torch.zeros(3, 5), torch.zeros(3, 5), torch.zeros(2).long())
    with pytest.raises(ValueError, match='integer class indices'):
        DKDLoss()(torch.zeros(3, 5), torch.zeros(3, 5), torch.zeros(3))


@pytest.mark.parametrize('kwargs, message', [
    (dict(temperature=0), 'temperature must be a finite number > 0, got 0.'),
    (dict(alpha=float('nan')), 'alpha must be a finite number >= 0, got nan.'),
    (dict(beta=-1), 'beta must be a finite number >= 0, got -1.'),
    (dict(loss_weight=float('inf')),
     'loss_weight must be a finite number >= 0, got inf.'),
])
def test_bad_numbers_name_key_value_and_range(kwargs, message):
    with pytest.raises(DistillerConfigError, match=re.escape(message)):
        DKDLoss(**kwargs)


def test_build_from_registry():
    loss = MODELS.build({'type': 'DKDLoss', 'temperature': 4, 'beta': 8})
    assert isinstance(loss, DKDLoss)
    assert (loss.temperature, loss.alpha, loss.beta) == (4, 1.0, 8)
