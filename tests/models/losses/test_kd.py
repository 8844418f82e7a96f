import re

import numpy as np
import pytest
import torch

from cls_kd.models.distillers import DistillerConfigError
from cls_kd.models.losses import KDLoss
from cls_kd.registry import MODELS

RNG = np.random.RandomState(0)
LOGITS_S = RNG.randn(3, 5) * 2
LOGITS_T = RNG.randn(3, 5) * 2


def softmax(v):
    e = np.exp(v - v.max())
    return e / e.sum()


def reference_kd(z_s, z_t, temperature, loss_weight):
    total = 0.0
    for b in range(z_s.shape[0]):
        p_s = softmax(z_s[b] / temperature)
        p_t = softmax(z_t[b] / temperature)
        for c in range(z_s.shape[1]):
            total += p_t[c] * (np.log(p_t[c]) - np.log(p_s[c]))
    return loss_weight * temperature**2 * total / z_s.shape[0]


@pytest.mark.parametrize('temperature, loss_weight', [(1.0, 1.0),
                                                      (4.0, 0.5)])
def test_matches_numpy(temperature, loss_weight):
    loss = KDLoss(temperature, loss_weight)(
        torch.tensor(LOGITS_S), torch.tensor(LOGITS_T))
    expected = reference_kd(LOGITS_S, LOGITS_T, temperature, loss_weight)
    assert loss.dim() == 0
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_gradient_reaches_student_only():
    logits_s = torch.tensor(LOGITS_S, requires_grad=True)
    logits_t = torch.tensor(LOGITS_T, requires_grad=True)
    KDLoss(temperature=2.0)(logits_s, logits_t).backward()
    assert logits_t.grad is None
    assert logits_s.grad.abs().sum() > 0


def test_half_precision_computed_in_float32():
    logits_s = torch.tensor(LOGITS_S).bfloat16()
    logits_t = torch.tensor(LOGITS_T).bfloat16()
    loss = KDLoss(temperature=2.0)(logits_s, logits_t)
    assert loss.dtype == torch.float32
    expected = reference_kd(logits_s.double().numpy(),
                            logits_t.double().numpy(), 2.0, 1.0)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r'\(3, 5\) and \(3, 4\)'):
        KDLoss()(torch.zeros(3, 5), torch.zeros(3, 4))


@pytest.mark.parametrize('kwargs, message', [
    (dict(temperature=0), 'temperature must be a finite number > 0, got 0.'),
    (dict(temperature=-1.0),
     'temperature must be a finite number > 0, got -1.0.'),
    (dict(temperature=float('inf')),
     'temperature must be a finite number > 0, got inf.'),
    (dict(loss_weight=float('nan')),
     'loss_weight must be a finite number >= 0, got nan.'),
    (dict(loss_weight=-0.5),
     'loss_weight must be a finite number >= 0, got -0.5.'),
    (dict(loss_weight=True),
     'loss_weight must be a finite number >= 0, got True.'),
])
def test_bad_numbers_name_key_value_and_range(kwargs, message):
    with pytest.raises(DistillerConfigError, match=re.escape(message)):
        KDLoss(**kwargs)


def test_zero_weight_is_allowed():
    logits = torch.randn(2, 3)
    assert KDLoss(loss_weight=0.)(logits, logits.flip(0)).item() == 0


def test_build_from_registry():
    loss = MODELS.build(
        {'type': 'KDLoss', 'temperature': 2, 'loss_weight': 0.5})
    assert isinstance(loss, KDLoss)
    assert (loss.temperature, loss.loss_weight) == (2, 0.5)
