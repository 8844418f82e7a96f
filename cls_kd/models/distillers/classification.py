"""The classification distiller: an mmpretrain classifier as student,
with its own supervised loss and label sources."""
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from mmpretrain.structures import DataSample

from cls_kd.registry import MODELS

from .base import BaseDistiller
from .errors import DistillerConfigError
from .val_teacher import TeacherValScores

__all__ = ['ClassificationDistiller']


@MODELS.register_module()
class ClassificationDistiller(BaseDistiller):
    """Distils frozen teachers into an mmpretrain classifier.

    The step returns the student's supervised loss (``loss_cls``, weighted
    by ``student_loss_weight`` or the current stage's; when that weight is
    not 1, the unweighted value is logged too, as ``cls_unweighted``, which
    mmengine does not add to the total) plus one entry per active loss
    term. Prediction is the student's; with ``val_teacher`` each predicted
    sample also gets the first teacher's class probabilities
    (``teacher_score``) for :class:`TeacherAgreementMetric`. Besides taps
    and teacher
    outputs (``logits_t``, ``logits_<teacher>``), loss inputs may read
    ``logits_s``, ``labels`` (hard; arg-max of Mixup/CutMix scores),
    ``soft_labels``, ``epoch`` and ``iter``.

    Args:
        student (dict): Config of an mmpretrain classifier (e.g.
            ``ImageClassifier``) whose head has ``_get_loss``. Its data
            preprocessor and batch augments (Mixup/CutMix) are the
            distiller's, applied once per batch.
        student_loss_weight (float): Weight of the student's own loss
            (``1 - alpha`` of Hinton KD). Defaults to 1.0.
        val_teacher (bool): Put ``teacher_score`` in the predictions
            (validation/test). Defaults to True.
        cache_val_teacher (bool): Run the teacher once per validation sample
            and reuse its scores (see :class:`TeacherValScores`). Defaults
            to True.
        **kwargs: See :class:`BaseDistiller` (teacher(s), taps, connectors,
            losses, stages, input_size, dry_run, data_preprocessor).
    """

    extra_sources = ('logits_s', 'labels', 'soft_labels')

    def __init__(self, student: dict, student_loss_weight: float = 1.0,
                 val_teacher: bool = True, cache_val_teacher: bool = True,
                 **kwargs):
        self.__dict__['student_loss_weight'] = float(student_loss_weight)
        super().__init__(student, **kwargs)
        self.val_scores = TeacherValScores(
            cache_val_teacher) if val_teacher and len(self.teachers) else None

    def build_student(self, cfg: dict, data_preprocessor: Optional[dict]):
        if data_preprocessor is not None:
            # mmpretrain's ImageClassifier writes its batch augments into
            # the dict it gets: the base passes a copy.
            cfg.setdefault('data_preprocessor', data_preprocessor)
        student = MODELS.build(cfg)
        if not hasattr(student, 'head') or not hasattr(
                student.head, '_get_loss'):
            raise DistillerConfigError(
                f'The student ({type(student).__name__}) needs a head with '
                f'_get_loss (an mmpretrain ClsHead); distil a bare backbone '
                f'with LabelFreeDistiller.')
        return student, student.data_preprocessor

    def forward_student(self, inputs: torch.Tensor) -> dict:
        return dict(
            logits_s=self.student.head(self.student.extract_feat(inputs)))

    def supervised_losses(self, outputs: dict, data_samples,
                          stage) -> Dict[str, torch.Tensor]:
        weight = self.student_loss_weight if \
            stage.student_loss_weight is None else stage.student_loss_weight
        losses = {}
        for key, value in self.student.head._get_loss(
                outputs['logits_s'], data_samples).items():
            losses['loss_cls' if key == 'loss' else key] = value
        if weight != 1:
            # No "loss" in the name: logged, not summed by parse_losses.
            losses['cls_unweighted'] = losses['loss_cls'].detach()
        losses['loss_cls'] = losses['loss_cls'] * weight
        return losses

    def dummy_batch(self) -> tuple:
        num_classes = getattr(self.student.head, 'num_classes', 2)
        inputs = torch.randn(2, 3, *self.input_size)
        return inputs, [
            DataSample().set_gt_label(i % num_classes) for i in range(2)
        ]

    def extra_source(self, name: str, values: dict,
                     data_samples: List[DataSample]):
        soft, num_classes = name == 'soft_labels', values['logits_s'].shape[1]
        if 'gt_score' in data_samples[0]:
            scores = torch.stack([s.gt_score for s in data_samples])
            return scores if soft else scores.argmax(dim=1)
        labels = torch.cat([s.gt_label for s in data_samples])
        return F.one_hot(labels, num_classes).float() if soft else labels

    def reserved_names(self) -> set:
        # A teacher named "s" would be read as logits_s.
        return super().reserved_names() | {'logits_s'}

    def forward(self,
                inputs: torch.Tensor,
                data_samples: Optional[List[DataSample]] = None,
                mode: str = 'tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        predictions = self.student(inputs, data_samples, mode=mode)
        if mode == 'predict' and self.val_scores is not None:
            self.val_scores.add_to(predictions, inputs, self._val_teacher)
        return predictions

    def _val_teacher(self, inputs: torch.Tensor) -> torch.Tensor:
        """The first teacher's logits for validation (``ValueError`` for
        images it cannot take)."""
        self.teachers.check_input(inputs)
        name = self.teachers.first
        return self._run_teacher(name, inputs, True)[f'logits_{name}']

    def extract_feat(self, inputs: torch.Tensor, **kwargs):
        """The student's features (for mmpretrain tools that call it)."""
        return self.student.extract_feat(inputs, **kwargs)
