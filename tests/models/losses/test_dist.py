import re

import numpy as np
import pytest
import torch

from cls_kd.models.distillers import DistillerConfigError
from cls_kd.models.losses import DISTLoss, KDLoss, dist_loss
from cls_kd.registry import MODELS

RNG = np.random.RandomState(5)
LOGITS_S = RNG.randn(4, 6) * 2
LOGITS_T = RNG.randn(4, 6) * 2


def softmax(v):
    e = np.exp(v - v.max())
    return e / e.sum()


def pearson(x, y, eps=1e-8):
    """By the textbook formula, one pair of vectors at a time."""
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    cov = sum((x[i] - mx) * (y[i] - my) for i in range(n))
    sx = np.sqrt(sum((x[i] - mx)**2 for i in range(n)))
    sy = np.sqrt(sum((y[i] - my)**2 for i in range(n)))
    return cov / (sx * sy + eps)


def reference_dist(z_s, z_t, tau=1.0, beta=1.0, gamma=1.0, loss_weight=1.0):
    p_s = np.stack([softmax(row / tau) for row in z_s])  # B, K
    p_t = np.stack([softmax(row / tau) for row in z_t])
    batch, classes = p_s.shape
    inter = 1 - np.mean([pearson(p_s[b], p_t[b]) for b in range(batch)])
    intra = 1 - np.mean(
        [pearson(p_s[:, c], p_t[:, c]) for c in range(classes)])
    return loss_weight * tau**2 * (beta * inter + gamma * intra)


def run(loss, z_s=LOGITS_S, z_t=LOGITS_T):
    return loss(torch.tensor(z_s), torch.tensor(z_t))


@pytest.mark.parametrize('tau, beta, gamma, loss_weight',
                         [(1.0, 1.0, 1.0, 1.0), (4.0, 1.0, 1.0, 2.0),
                          (2.0, 0.5, 3.0, 1.0), (1.0, 1.0, 0.0, 1.0),
                          (1.0, 0.0, 1.0, 1.0)])
def test_matches_numpy(tau, beta, gamma, loss_weight):
    loss = run(DISTLoss(tau, beta, gamma, loss_weight))
    expected = reference_dist(LOGITS_S, LOGITS_T, tau, beta, gamma,
                              loss_weight)
    assert loss.dim() == 0
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_hand_computed_value():
    # Two samples, two classes: every centred vector is ±(d, −d), so each
    # correlation is the sign of the product of the differences.
    z_s = np.array([[2.0, 0.0], [0.0, 1.0]])
    z_t = np.array([[0.0, 3.0], [0.0, 1.0]])
    # rows: sample 0 disagrees (−1), sample 1 agrees (+1): inter = 1.
    # columns: the student's class-0 probability falls from sample 0 to 1
    # (0.88 -> 0.27) where the teacher's rises (0.05 -> 0.27), and class 1
    # the other way round: both −1, intra = 2.
    assert run(DISTLoss(), z_s, z_t).item() == pytest.approx(3.0, abs=1e-6)
    assert run(DISTLoss(beta=1.0, gamma=0.0), z_s,
               z_t).item() == pytest.approx(1.0, abs=1e-6)


def test_relaxed_match_affine_student_costs_nothing():
    # A student that mixes the teacher's probabilities with the uniform
    # distribution is an affine image of the teacher in every row and every
    # column: DIST is ~0 where KD is not.
    p_t = np.stack([softmax(row) for row in LOGITS_T])
    p_s = 0.3 * p_t + 0.7 / p_t.shape[1]
    z_s = np.log(p_s) + 1.7  # a shift of the logits changes nothing
    assert run(DISTLoss(), z_s).item() == pytest.approx(0.0, abs=1e-5)
    assert run(KDLoss(), z_s).item() > 0.1
    # An anti-correlated student costs more than an uninformed one (1).
    z_anti = np.log(1.0 - p_t)
    assert run(DISTLoss(), z_anti).item() > 1.0


def test_gradient_matches_finite_differences_of_reference():
    logits_s = torch.tensor(LOGITS_S, requires_grad=True)
    dist_loss(logits_s, torch.tensor(LOGITS_T), 2.0, 1.0, 0.5).backward()
    # float32 inside the loss: compare with a central difference of the
    # float64 NumPy reference at a step float32 resolves.
    numeric = np.zeros_like(LOGITS_S)
    h = 1e-4
    for idx in np.ndindex(*LOGITS_S.shape):
        up, down = LOGITS_S.copy(), LOGITS_S.copy()
        up[idx] += h
        down[idx] -= h
        numeric[idx] = (reference_dist(up, LOGITS_T, 2.0, 1.0, 0.5) -
                        reference_dist(down, LOGITS_T, 2.0, 1.0, 0.5)) / (
                            2 * h)
    assert np.abs(numeric).max() > 1e-3
    np.testing.assert_allclose(
        logits_s.grad.numpy(), numeric, rtol=1e-3, atol=1e-5)


def test_gradient_reaches_student_only():
    logits_s = torch.tensor(LOGITS_S, requires_grad=True)
    logits_t = torch.tensor(LOGITS_T, requires_grad=True)
    DISTLoss(temperature=2.0)(logits_s, logits_t).backward()
    assert logits_t.grad is None
    assert logits_s.grad.abs().sum() > 0


def test_half_precision_computed_in_float32():
    logits_s = torch.tensor(LOGITS_S).bfloat16()
    logits_t = torch.tensor(LOGITS_T).bfloat16()
    loss = DISTLoss()(logits_s, logits_t)
    assert loss.dtype == torch.float32
    expected = reference_dist(logits_s.double().numpy(),
                              logits_t.double().numpy())
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_batch_order_does_not_matter():
    perm = [2, 0, 3, 1]
    loss = run(DISTLoss()).item()
    permuted = run(DISTLoss(), LOGITS_S[perm], LOGITS_T[perm]).item()
    assert permuted == pytest.approx(loss, rel=1e-6)


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r'\(3, 5\) and \(3, 4\)'):
        DISTLoss()(torch.zeros(3, 5), torch.zeros(3, 4))


@pytest.mark.parametrize('kwargs, message', [
    (dict(temperature=0), 'temperature must be a finite number > 0, got 0.'),
    (dict(temperature=-1.0),
     'temperature must be a finite number > 0, got -1.0.'),
    (dict(beta=-1), 'beta must be a finite number >= 0, got -1.'),
    (dict(gamma=float('inf')), 'gamma must be a finite number >= 0, got inf.'),
    (dict(loss_weight=float('nan')),
     'loss_weight must be a finite number >= 0, got nan.'),
])
def test_bad_numbers_name_key_value_and_range(kwargs, message):
    with pytest.raises(DistillerConfigError, match=re.escape(message)):
        DISTLoss(**kwargs)


def test_build_from_registry():
    loss = MODELS.build({
        'type': 'DISTLoss', 'temperature': 1, 'beta': 1, 'gamma': 1,
        'loss_weight': 2.0})
    assert isinstance(loss, DISTLoss)
    assert (loss.temperature, loss.beta, loss.gamma,
            loss.loss_weight) == (1, 1, 1, 2.0)
