import re

import numpy as np
import pytest
import torch

from cls_kd.models.distillers import DistillerConfigError
from cls_kd.models.losses import NKDLoss
from cls_kd.registry import MODELS

RNG = np.random.RandomState(2)
LOGITS_S = RNG.randn(3, 5) * 2
LOGITS_T = RNG.randn(3, 5) * 2
LABELS = np.array([2, 0, 4])


def softmax(v):
    e = np.exp(v - v.max())
    return e / e.sum()


def reference_nkd(z_s, z_t, labels, temperature, gamma, loss_weight,
                  drop_target=True):
    """With ``drop_target=False``: the flawed variant that keeps the
    full-softmax probabilities and only zeroes the target column."""
    loss_t = loss_nt = 0.0
    for b, y in enumerate(labels):
        loss_t -= softmax(z_t[b])[y] * np.log(softmax(z_s[b])[y])
        others = [c for c in range(z_s.shape[1]) if c != y]
        if drop_target:
            q_s = softmax(z_s[b, others] / temperature)
            q_t = softmax(z_t[b, others] / temperature)
        else:
            q_s = softmax(z_s[b] / temperature)[others]
            q_t = softmax(z_t[b] / temperature)[others]
        for c in range(len(others)):
            loss_nt -= q_t[c] * np.log(q_s[c])
    batch = len(labels)
    return loss_weight * (loss_t / batch +
                          gamma * temperature**2 * loss_nt / batch)


def run(loss):
    return loss(
        torch.tensor(LOGITS_S), torch.tensor(LOGITS_T), torch.tensor(LABELS))


@pytest.mark.parametrize('temperature, gamma, loss_weight',
                         [(1.0, 1.0, 1.0), (3.0, 3.5, 1.0),
                          (2.0, 1.5, 0.5)])
def test_matches_numpy(temperature, gamma, loss_weight):
    loss = run(NKDLoss(temperature, gamma, loss_weight))
    expected = reference_nkd(LOGITS_S, LOGITS_T, LABELS, temperature, gamma,
                             loss_weight)
    assert loss.dim() == 0
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_target_column_dropped_not_zeroed():
    loss = run(NKDLoss()).item()
    dropped = reference_nkd(LOGITS_S, LOGITS_T, LABELS, 1.0, 1.0, 1.0)
    zeroed = reference_nkd(
        LOGITS_S, LOGITS_T, LABELS, 1.0, 1.0, 1.0, drop_target=False)
    assert abs(dropped - zeroed) > 0.1
    assert loss == pytest.approx(dropped, rel=1e-5)
    assert loss != pytest.approx(zeroed, rel=1e-2)


def test_gradient_reaches_student_only():
    logits_s = torch.tensor(LOGITS_S, requires_grad=True)
    logits_t = torch.tensor(LOGITS_T, requires_grad=True)
    NKDLoss(temperature=2.0)(logits_s, logits_t, torch.tensor(LABELS))\
        .backward()
    assert logits_t.grad is None
    assert logits_s.grad.abs().sum() > 0


def test_half_precision_computed_in_float32():
    loss = NKDLoss()(
        torch.tensor(LOGITS_S).half(),
        torch.tensor(LOGITS_T).half(), torch.tensor(LABELS))
    assert loss.dtype == torch.float32


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r'\(3, 5\) and \(5, 3\)'):
        NKDLoss()(torch.zeros(3, 5), torch.zeros(5, 3), torch.zeros(3).long())


@pytest.mark.parametrize('kwargs, message', [
    (dict(temperature=-2.0),
     'temperature must be a finite number > 0, got -2.0.'),
    (dict(gamma=float('nan')), 'gamma must be a finite number >= 0, got nan.'),
    (dict(gamma=-1.5), 'gamma must be a finite number >= 0, got -1.5.'),
    (dict(loss_weight='1'),
     "loss_weight must be a finite number >= 0, got '1'."),
])
def test_bad_numbers_name_key_value_and_range(kwargs, message):
    with pytest.raises(DistillerConfigError, match=re.escape(message)):
        NKDLoss(**kwargs)


def test_build_from_registry():
    loss = MODELS.build({'type': 'NKDLoss', 'temperature': 2})
    assert isinstance(loss, NKDLoss)
    assert (loss.temperature, loss.gamma) == (2, 1.0)
