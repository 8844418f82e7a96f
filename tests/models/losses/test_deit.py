import re

import numpy as np
import pytest
import torch

from cls_kd.models.distillers import DistillerConfigError
from cls_kd.models.losses import DeiTDistillLoss
from cls_kd.registry import MODELS

RNG = np.random.RandomState(3)
LOGITS_S = RNG.randn(3, 5) * 2
LOGITS_T = RNG.randn(3, 5) * 2


def softmax(v):
    e = np.exp(v - v.max())
    return e / e.sum()


def reference_hard(z_s, z_t, loss_weight):
    total = 0.0
    for b in range(z_s.shape[0]):
        teacher_class = int(np.argmax(z_t[b]))
        total -= np.log(softmax(z_s[b])[teacher_class])
    return loss_weight * total / z_s.shape[0]


def reference_soft(z_s, z_t, temperature, loss_weight):
    total = 0.0
    for b in range(z_s.shape[0]):
        p_s = softmax(z_s[b] / temperature)
        p_t = softmax(z_t[b] / temperature)
        for c in range(z_s.shape[1]):
            total += p_t[c] * (np.log(p_t[c]) - np.log(p_s[c]))
    return loss_weight * temperature**2 * total / z_s.size


def run(loss):
    return loss(torch.tensor(LOGITS_S), torch.tensor(LOGITS_T))


@pytest.mark.parametrize('loss_weight', [1.0, 0.5])
def test_hard_matches_numpy(loss_weight):
    # The temperature must not affect the hard loss.
    loss = run(DeiTDistillLoss('hard', 3.0, loss_weight))
    expected = reference_hard(LOGITS_S, LOGITS_T, loss_weight)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize('temperature, loss_weight', [(1.0, 1.0),
                                                      (3.0, 0.5)])
def test_soft_matches_numpy(temperature, loss_weight):
    loss = run(DeiTDistillLoss('soft', temperature, loss_weight))
    expected = reference_soft(LOGITS_S, LOGITS_T, temperature, loss_weight)
    assert loss.dim() == 0
    assert loss.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize('mode', ['hard', 'soft'])
def test_gradient_reaches_student_only(mode):
    logits_s = torch.tensor(LOGITS_S, requires_grad=True)
    logits_t = torch.tensor(LOGITS_T, requires_grad=True)
    DeiTDistillLoss(mode, temperature=2.0)(logits_s, logits_t).backward()
    assert logits_t.grad is None
    assert logits_s.grad.abs().sum() > 0


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r'\(3, 5\) and \(3, 5, 1\)'):
        DeiTDistillLoss()(torch.zeros(3, 5), torch.zeros(3, 5, 1))


def test_unknown_mode_rejected():
    with pytest.raises(ValueError, match=r"mode must be one of .* 'medium'"):
        DeiTDistillLoss(mode='medium')


@pytest.mark.parametrize('kwargs, message', [
    (dict(mode='soft', temperature=0.0),
     'temperature must be a finite number > 0, got 0.0.'),
    (dict(loss_weight=float('nan')),
     'loss_weight must be a finite number >= 0, got nan.'),
])
def test_bad_numbers_name_key_value_and_range(kwargs, message):
    with pytest.raises(DistillerConfigError, match=re.escape(message)):
        DeiTDistillLoss(**kwargs)


def test_build_from_registry():
    loss = MODELS.build({'type': 'DeiTDistillLoss', 'mode': 'soft'})
    assert isinstance(loss, DeiTDistillLoss)
    assert loss.mode == 'soft'
