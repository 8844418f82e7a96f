"""The classification distiller: an mmpretrain classifier as student,
with its own supervised loss and label sources."""
from typing import Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.structures import DataSample

from cls_kd.errors import DistillerConfigError, check_number
from cls_kd.registry import MODELS

from ..teachers import TeacherValScores
from .base import BaseDistiller

__all__ = [
    'ClassificationDistiller', 'student_kind', 'student_num_classes',
    'keep_model_prefix'
]


def student_kind(student: nn.Module) -> str:
    """How a classifier student gives its logits and supervised loss.

    ``'head'``: an mmpretrain classifier whose head has ``_get_loss``
    (``ImageClassifier``): logits ``head(extract_feat(x))``. ``'model'``: an
    mmpretrain ``BaseClassifier`` that has ``_get_loss`` itself and returns
    logits in ``mode='tensor'`` (``TimmClassifier``,
    ``HuggingFaceClassifier``).

    Raises:
        DistillerConfigError: Neither (e.g. a bare backbone), with the forms
            that work.
    """
    from mmpretrain.models import BaseClassifier
    head = getattr(student, 'head', None)
    if head is not None and hasattr(head, '_get_loss'):
        return 'head'
    if isinstance(student, BaseClassifier) and hasattr(student, '_get_loss'):
        return 'model'
    raise _not_a_classifier(type(student).__name__)


def _not_a_classifier(name: str) -> DistillerConfigError:
    return DistillerConfigError(
        f'The student ({name}) is not a classifier that cls_kd can train: '
        f'give an mmpretrain ImageClassifier (a head with _get_loss), or a '
        f"timm model as dict(type='TimmClassifier', model_name='resnet18', "
        f'num_classes=N); distil a bare backbone with LabelFreeDistiller.')


# mmpretrain's TimmClassifier and HuggingFaceClassifier drop ``model.`` from
# their state-dict keys with these hooks, and add it back on loading.
_KEY_HOOKS = ('_remove_state_dict_prefix', '_add_state_dict_prefix')


def keep_model_prefix(student: nn.Module) -> bool:
    """Remove the hooks that drop ``model.`` from a wrapped model's
    state-dict keys (TimmClassifier, HuggingFaceClassifier); returns whether
    there were any.

    PyTorch applies a state-dict hook's returned dict only at the root
    module: inside a distiller, TimmClassifier's keys keep ``model.`` when
    saved, while its loading hook still adds one more, so that a distiller
    checkpoint would not load back (resume). Without the hooks the keys are
    ``student.model.*`` both ways; ``extract_student.py`` drops ``model.``
    again for the plain classifier.
    """
    found = False
    for hooks in (student._state_dict_hooks,
                  student._load_state_dict_pre_hooks):
        for key, hook in list(hooks.items()):
            function = getattr(hook, 'hook', hook)  # torch wraps pre-hooks
            if getattr(function, '__name__', '') in _KEY_HOOKS:
                del hooks[key]
                found = True
    return found


def student_num_classes(student: nn.Module) -> Optional[int]:
    """The number of classes of a classifier (its head's, or a timm
    model's ``num_classes``), None when it does not say."""
    for owner in (getattr(student, 'head', None),
                  getattr(student, 'model', None)):
        value = getattr(owner, 'num_classes', None)
        if isinstance(value, int) and value > 0:
            return value
    return None


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
        student (dict): Config of an mmpretrain classifier: one whose head
            has ``_get_loss`` (``ImageClassifier``), or one that computes
            its logits and loss itself (``TimmClassifier``, any timm model
            by ``model_name``; see :func:`student_kind`). Its data
            preprocessor and batch augments (Mixup/CutMix) are the
            distiller's, applied once per batch.
        student_loss_weight (float): Weight of the student's own loss
            (``1 - alpha`` of Hinton KD), finite and >= 0. Defaults to 1.0.
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
        self.__dict__['student_loss_weight'] = float(check_number(
            'model.student_loss_weight', student_loss_weight, low=0))
        super().__init__(student, **kwargs)
        self.val_scores = TeacherValScores(
            cache_val_teacher) if val_teacher and len(self.teachers) else None

    def build_student(self, cfg: dict, data_preprocessor: Optional[dict]):
        if data_preprocessor is not None:
            # mmpretrain's ImageClassifier writes its batch augments into
            # the dict it gets: the base passes a copy.
            cfg.setdefault('data_preprocessor', data_preprocessor)
        from mmpretrain.models import BaseClassifier
        kind = cfg.get('type')
        kind = MODELS.get(kind) if isinstance(kind, str) else kind
        if isinstance(kind, type) and not issubclass(kind, BaseClassifier):
            # e.g. a backbone, which would not take a data preprocessor.
            raise _not_a_classifier(kind.__name__)
        student = MODELS.build(cfg)
        self.__dict__['student_kind'] = student_kind(student)
        keep_model_prefix(student)
        return student, student.data_preprocessor

    def forward_student(self, inputs: torch.Tensor) -> dict:
        if self.student_kind == 'head':
            return dict(logits_s=self.student.head(
                self.student.extract_feat(inputs)))
        return dict(logits_s=self.student(inputs, mode='tensor'))

    @property
    def _loss_owner(self):
        """What computes the student's supervised loss (``_get_loss``)."""
        return (self.student.head
                if self.student_kind == 'head' else self.student)

    def supervised_losses(self, outputs: dict, data_samples,
                          stage) -> Dict[str, torch.Tensor]:
        weight = self.student_loss_weight if \
            stage.student_loss_weight is None else stage.student_loss_weight
        losses = {}
        for key, value in self._loss_owner._get_loss(
                outputs['logits_s'], data_samples).items():
            losses['loss_cls' if key == 'loss' else key] = value
        if weight != 1:
            # No "loss" in the name: logged, not summed by parse_losses.
            losses['cls_unweighted'] = losses['loss_cls'].detach()
        losses['loss_cls'] = losses['loss_cls'] * weight
        return losses

    def dummy_batch(self) -> tuple:
        num_classes = student_num_classes(self.student) or 2
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
