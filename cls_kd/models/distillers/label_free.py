"""The label-free distiller: the student learns only from its teachers."""
from typing import Dict, List, Optional

import torch
from mmpretrain.structures import DataSample

from cls_kd.registry import MODELS

from .base import BaseDistiller

__all__ = ['LabelFreeDistiller']


@MODELS.register_module()
class LabelFreeDistiller(BaseDistiller):
    """Distils frozen teachers into a student without ever reading a label
    (self-supervised teachers, e.g. AttnDistill).

    The student may be a bare backbone (e.g. an mmpretrain
    ``VisionTransformer``) or a model with ``extract_feat``; the step has no
    supervised loss, only the active loss terms. Loss inputs may read
    ``feats_s`` (the student's features, as its backbone returns them),
    taps, teacher outputs (``logits_<teacher>``: the teacher's forward
    output, e.g. a backbone's feature tuple), ``epoch`` and ``iter``.

    ``mode='tensor'`` returns the student's features and ``mode='predict'``
    the data samples with the evaluated feature (the last entry of a
    backbone's tuple output, e.g. its CLS token) in ``feat``, for k-NN or
    linear evaluation.

    Args:
        student (dict): Config of the student (a backbone or a model).
        data_preprocessor (dict, optional): The preprocessor of the inputs
            (normalisation, batch augments); defaults to mmpretrain's
            ``ClsDataPreprocessor`` without normalisation.
        **kwargs: See :class:`BaseDistiller`.
    """

    extra_sources = ('feats_s', )

    def build_student(self, cfg: dict, data_preprocessor: Optional[dict]):
        student = MODELS.build(cfg)
        preprocessor = getattr(student, 'data_preprocessor', None)
        if preprocessor is None or 'data_preprocessor' not in cfg:
            preprocessor = {
                'type': 'ClsDataPreprocessor',
                **(data_preprocessor or {})
            }
        return student, preprocessor

    def features(self, inputs: torch.Tensor):
        """The student's features (its backbone's output)."""
        if hasattr(self.student, 'extract_feat'):
            return self.student.extract_feat(inputs)
        return self.student(inputs)

    def extract_feat(self, inputs: torch.Tensor):
        """The student's features (for k-NN evaluation and mmpretrain
        tools)."""
        return self.features(inputs)

    def forward_student(self, inputs: torch.Tensor) -> dict:
        return dict(feats_s=self.features(inputs))

    def supervised_losses(self, outputs: dict, data_samples,
                          stage) -> Dict[str, torch.Tensor]:
        return {}

    def dummy_batch(self) -> tuple:
        return torch.randn(2, 3, *self.input_size), [
            DataSample() for _ in range(2)
        ]

    def forward(self,
                inputs: torch.Tensor,
                data_samples: Optional[List[DataSample]] = None,
                mode: str = 'tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        feats = self.features(inputs)
        if mode == 'tensor':
            return feats
        if mode != 'predict':
            raise ValueError(f'Invalid mode {mode!r}.')
        feat = feats[-1] if isinstance(feats, (tuple, list)) else feats
        if data_samples is None:
            data_samples = [DataSample() for _ in range(feat.shape[0])]
        for sample, value in zip(data_samples, feat):
            sample.set_field(value, 'feat')
        return data_samples
