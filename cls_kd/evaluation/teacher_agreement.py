"""How far the student is from its teacher on the validation set: the
teacher's own top-1, the rate at which their top-1 classes agree, and the
mean KL divergence KL(teacher || student) of their class distributions
(asked for by mmrazor users, open-mmlab/mmrazor#360)."""
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger

from cls_kd.registry import METRICS

__all__ = ['teacher_agreement', 'TeacherAgreementMetric']


def teacher_agreement(pred_scores: torch.Tensor,
                      teacher_scores: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Per-sample agreement of a student with its teacher.

    Args:
        pred_scores (Tensor): The student's class probabilities, (N, C).
        teacher_scores (Tensor): The teacher's, (N, C).

    Returns:
        dict: ``agree`` (N, bool: same arg-max class) and ``kl`` (N,
        ``sum_c t_c * (log t_c - log s_c)`` in nats, 0 * log 0 taken as 0).
    """
    if pred_scores.shape != teacher_scores.shape:
        raise ValueError(f'Student scores {tuple(pred_scores.shape)} and '
                         f'teacher scores {tuple(teacher_scores.shape)} '
                         f'differ: do they predict the same classes?')
    s = pred_scores.double()
    t = teacher_scores.double()
    tiny = torch.finfo(s.dtype).tiny
    kl = (torch.special.xlogy(t, t) - t * s.clamp_min(tiny).log()).sum(1)
    return dict(agree=s.argmax(1) == t.argmax(1), kl=kl)


@METRICS.register_module()
class TeacherAgreementMetric(BaseMetric):
    """The teacher's top-1 and the student-teacher agreement, from the
    ``teacher_score`` that a :class:`ClassificationDistiller` with
    ``val_teacher=True`` (the default) puts beside each ``pred_score``.

    Reports ``teacher/top1`` (%, when the samples have ``gt_label``),
    ``teacher/agreement`` (% of samples where the student's top-1 class is
    the teacher's) and ``teacher/kl`` (mean KL(teacher || student), nats).
    The distiller runs its teacher once per validation sample and reuses the
    scores in later validations, so the teacher's top-1 is the same every
    epoch at no further cost. Samples without ``teacher_score`` (a plain
    student model) give no values and a warning.

    Use it beside the accuracy: ``val_evaluator = [dict(type='Accuracy',
    topk=(1, )), dict(type='TeacherAgreementMetric')]``.

    Args:
        collect_device (str): Where results are gathered across ranks,
            ``'cpu'`` or ``'gpu'``. Defaults to ``'cpu'``.
        prefix (str, optional): Prefix of the metric names. Defaults to
            ``'teacher'``.
    """

    default_prefix: Optional[str] = 'teacher'

    def __init__(self,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Keep, per sample, whether student and teacher agree, their KL
        divergence and whether the teacher is right (None without label or
        teacher score)."""
        with_teacher = [s for s in data_samples if 'teacher_score' in s]
        self.results.extend(
            dict(agree=None) for _ in range(len(data_samples) -
                                            len(with_teacher)))
        if not with_teacher:
            return
        pred = torch.stack([s['pred_score'] for s in with_teacher]).cpu()
        teacher = torch.stack([s['teacher_score']
                               for s in with_teacher]).cpu()
        values = teacher_agreement(pred, teacher)
        teacher_top1 = teacher.argmax(1)
        for i, sample in enumerate(with_teacher):
            label = sample.get('gt_label')
            correct = None if label is None or len(label) != 1 else bool(
                teacher_top1[i] == label.cpu()[0])
            self.results.append(
                dict(agree=bool(values['agree'][i]),
                     kl=float(values['kl'][i]),
                     teacher_correct=correct))

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        scored = [r for r in results if r['agree'] is not None]
        if len(scored) < len(results):
            MMLogger.get_current_instance().warning(
                f'TeacherAgreementMetric: {len(results) - len(scored)} of '
                f'{len(results)} samples have no teacher_score (evaluate a '
                f'ClassificationDistiller with val_teacher=True, not a '
                f'plain student).')
        if not scored:
            return {}
        metrics = dict(
            agreement=100.0 * sum(r['agree'] for r in scored) / len(scored),
            kl=sum(r['kl'] for r in scored) / len(scored))
        labelled = [r['teacher_correct'] for r in scored
                    if r['teacher_correct'] is not None]
        if labelled:
            metrics['top1'] = 100.0 * sum(labelled) / len(labelled)
        return metrics
