"""Teacher scores in validation predictions, and the unweighted student
loss in the logs."""
import pytest
import torch
import torch.nn.functional as F
from mmpretrain.structures import DataSample

import cls_kd
from cls_kd.registry import MODELS

cls_kd.register_all_modules()

PREPROCESSOR = dict(num_classes=10, mean=[0., 0., 0.], std=[1., 1., 1.])
KD = dict(loss_kd=dict(type='KDLoss', loss_weight=0.9,
                       inputs=dict(logits_s='logits_s', logits_t='logits_t')))


def build(tiny_vit, **kwargs):
    torch.manual_seed(0)
    cfg = dict(
        type='ClassificationDistiller',
        student=tiny_vit(32, 2),
        teacher=dict(config=tiny_vit(48, 3), checkpoint=None,
                     random_init=True),
        data_preprocessor=PREPROCESSOR,
        losses=KD)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def samples(indices, labels=None):
    labels = labels or [0] * len(indices)
    return [
        DataSample(metainfo=dict(sample_idx=i)).set_gt_label(label)
        for i, label in zip(indices, labels)
    ]


def teacher_forwards(model):
    calls = []
    model.teachers['teacher'].head.register_forward_hook(
        lambda *args: calls.append(1))
    return calls


@pytest.fixture
def images():
    torch.manual_seed(1)
    return torch.randn(3, 3, 32, 32)


def predict(model, inputs, data_samples):
    with torch.no_grad():
        return model(inputs, data_samples, mode='predict')


# ------------------------------------------------------ teacher scores
def test_predictions_carry_teacher_scores(tiny_vit, images):
    model = build(tiny_vit).eval()
    out = predict(model, images, samples([0, 1, 2]))
    with torch.no_grad():
        expected = model.teachers['teacher'](images).softmax(dim=1)
        student = model.student(images).softmax(dim=1)
    torch.testing.assert_close(
        torch.stack([s.teacher_score for s in out]), expected)
    # The prediction itself stays the student's.
    torch.testing.assert_close(torch.stack([s.pred_score for s in out]),
                               student)


def test_teacher_runs_once_per_sample(tiny_vit, images):
    model = build(tiny_vit).eval()
    calls = teacher_forwards(model)
    first = predict(model, images, samples([0, 1, 2]))
    again = predict(model, images, samples([0, 1, 2]))
    assert len(calls) == 1 and model.val_scores.teacher_runs == 1
    torch.testing.assert_close(
        torch.stack([s.teacher_score for s in again]),
        torch.stack([s.teacher_score for s in first]))


def test_cache_is_not_fooled_by_another_image_with_the_same_index(
        tiny_vit, images):
    model = build(tiny_vit).eval()
    calls = teacher_forwards(model)
    predict(model, images, samples([0, 1, 2]))
    other = images.flip(0)  # e.g. the test split after the val split
    out = predict(model, other, samples([0, 1, 2]))
    assert len(calls) == 2
    with torch.no_grad():
        expected = model.teachers['teacher'](other).softmax(dim=1)
    torch.testing.assert_close(torch.stack([s.teacher_score for s in out]),
                               expected)


def test_without_sample_index_or_cache_the_teacher_runs_each_time(
        tiny_vit, images):
    model = build(tiny_vit, cache_val_teacher=False).eval()
    calls = teacher_forwards(model)
    for _ in range(2):
        predict(model, images, samples([0, 1, 2]))
    assert len(calls) == 2
    model = build(tiny_vit).eval()
    calls = teacher_forwards(model)
    for _ in range(2):
        predict(model, images, [DataSample() for _ in range(3)])
    assert len(calls) == 2


def test_val_teacher_off(tiny_vit, images):
    model = build(tiny_vit, val_teacher=False).eval()
    calls = teacher_forwards(model)
    out = predict(model, images, samples([0, 1, 2]))
    assert calls == [] and 'teacher_score' not in out[0]


# ------------------------------------------------ unweighted student loss
def test_unweighted_student_loss_is_logged_not_summed(tiny_vit, images):
    model = build(tiny_vit, student_loss_weight=0.1)
    data = samples([0, 1, 2], labels=[3, 7, 1])
    losses = model.loss(images, data)
    ce = F.cross_entropy(model.student(images), torch.tensor([3, 7, 1]))
    torch.testing.assert_close(losses['cls_unweighted'], ce)
    torch.testing.assert_close(losses['loss_cls'], 0.1 * ce)
    assert not losses['cls_unweighted'].requires_grad
    total, log_vars = model.parse_losses(losses)
    torch.testing.assert_close(total,
                               losses['loss_cls'] + losses['loss_kd'])
    assert log_vars['cls_unweighted'] == pytest.approx(ce.item())


def test_no_unweighted_entry_at_weight_one(tiny_vit, images):
    model = build(tiny_vit)
    losses = model.loss(images, samples([0, 1, 2]))
    assert set(losses) == {'loss_cls', 'loss_kd'}
