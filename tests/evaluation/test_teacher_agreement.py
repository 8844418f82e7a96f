"""TeacherAgreementMetric against values computed by hand."""
import logging
import math

import pytest
import torch
from mmengine.evaluator import Evaluator
from mmengine.logging import MMLogger
from mmpretrain.structures import DataSample

import cls_kd
from cls_kd.evaluation import TeacherAgreementMetric, teacher_agreement

cls_kd.register_all_modules()

STUDENT = [[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.3, 0.5]]
TEACHER = [[0.6, 0.4, 0.0], [0.2, 0.2, 0.6], [0.1, 0.1, 0.8]]
LABELS = [0, 1, 2]
# KL(t || s) = sum_c t_c ln(t_c / s_c), with 0 ln 0 = 0.
KL = [
    0.6 * math.log(0.6 / 0.7) + 0.4 * math.log(0.4 / 0.2),
    0.2 * math.log(0.2 / 0.1) + 0.2 * math.log(0.2 / 0.6) +
    0.6 * math.log(0.6 / 0.3),
    0.1 * math.log(0.1 / 0.2) + 0.1 * math.log(0.1 / 0.3) +
    0.8 * math.log(0.8 / 0.5),
]


def sample(student, teacher=None, label=None):
    s = DataSample().set_pred_score(torch.tensor(student))
    if teacher is not None:
        s.set_field(torch.tensor(teacher), 'teacher_score')
    if label is not None:
        s.set_gt_label(label)
    return s


def evaluate(samples):
    evaluator = Evaluator([dict(type='TeacherAgreementMetric')])
    evaluator.process(samples)
    return evaluator.evaluate(len(samples))


def test_functional_core():
    values = teacher_agreement(torch.tensor(STUDENT, dtype=torch.float64),
                               torch.tensor(TEACHER, dtype=torch.float64))
    assert values['agree'].tolist() == [True, False, True]
    assert values['kl'].tolist() == pytest.approx(KL, rel=1e-12)


def test_metric_values():
    metrics = evaluate([
        sample(s, t, label) for s, t, label in zip(STUDENT, TEACHER, LABELS)
    ])
    # Teacher top-1: classes 0, 2, 2 for labels 0, 1, 2.
    assert metrics == pytest.approx({
        'teacher/top1': 200 / 3,
        'teacher/agreement': 200 / 3,
        'teacher/kl': sum(KL) / 3,
    })


def test_metric_without_labels_has_no_teacher_top1():
    metrics = evaluate([sample(s, t) for s, t in zip(STUDENT, TEACHER)])
    assert set(metrics) == {'teacher/agreement', 'teacher/kl'}


def test_samples_without_teacher_score_are_left_out_with_a_warning():
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        metrics = evaluate([sample(STUDENT[0], TEACHER[0], 0),
                            sample(STUDENT[1], label=1)])
        empty = evaluate([sample(STUDENT[1], label=1)])
    finally:
        logger.removeHandler(handler)
    assert metrics == pytest.approx({
        'teacher/top1': 100.0, 'teacher/agreement': 100.0,
        'teacher/kl': KL[0]})
    assert empty == {}
    assert ('TeacherAgreementMetric: 1 of 2 samples have no teacher_score '
            '(evaluate a ClassificationDistiller with val_teacher=True, not '
            'a plain student).') in records


def test_class_mismatch_is_an_error():
    with pytest.raises(ValueError, match=r'Student scores \(1, 3\) and '
                       r'teacher scores \(1, 4\) differ'):
        teacher_agreement(torch.ones(1, 3) / 3, torch.ones(1, 4) / 4)


def test_registered_in_cls_kd_scope():
    from cls_kd.registry import METRICS
    assert METRICS.get('TeacherAgreementMetric') is TeacherAgreementMetric
