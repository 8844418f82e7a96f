"""A DeiT head with distillation token that can be trained."""
from typing import Tuple

import torch
from mmpretrain.models.heads import DeiTClsHead

from cls_kd.registry import MODELS

__all__ = ['DeiTDistillHead']


@MODELS.register_module()
class DeiTDistillHead(DeiTClsHead):
    """Trainable head of a distilled DeiT (class + distillation token).

    Reference: Touvron et al., "Training data-efficient image transformers &
    distillation through attention", ICML 2021.

    mmpretrain's ``DeiTClsHead`` can only run a trained model. Here, in
    training mode ``forward`` returns the class-token logits (which the
    student's own loss supervises) and still runs ``layers.head_dist`` on
    the distillation token, so that a tap on ``head.layers.head_dist`` hands
    its logits to :class:`DeiTDistillLoss`. In eval mode the prediction is
    the average of the two heads, as in DeiT. Arguments are those of
    ``DeiTClsHead``.
    """

    def forward(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        cls_token, dist_token = self.pre_logits(feats)
        cls_score = self.layers.head(cls_token)
        dist_score = self.layers.head_dist(dist_token)
        if self.training:
            return cls_score
        return (cls_score + dist_score) / 2
