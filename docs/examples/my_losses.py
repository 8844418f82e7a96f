"""A loss and a distiller registered outside cls_kd (see docs/extending.md).

Used by ``docs/examples/mse_logits_resnet18-c16_vit-t4-p8_1xb64_digits.py``
through ``custom_imports``; the test suite runs that config.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from cls_kd.models import ClassificationDistiller
from cls_kd.registry import MODELS


def mse_logits_loss(logits_s: torch.Tensor,
                    logits_t: torch.Tensor) -> torch.Tensor:
    """Mean squared error between logits (Ba & Caruana, 2014)."""
    return F.mse_loss(logits_s.float(), logits_t.detach().float())


@MODELS.register_module()
class MSELogitsLoss(nn.Module):
    """Logit matching by mean squared error.

    Args:
        loss_weight (float): Weight of the term. Defaults to 1.0.
    """

    def __init__(self, loss_weight: float = 1.0):
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, logits_s: torch.Tensor,
                logits_t: torch.Tensor) -> torch.Tensor:
        """logits_s, logits_t: (B, K) -> scalar."""
        if logits_s.shape != logits_t.shape:
            raise ValueError(f'MSELogitsLoss: student logits '
                             f'{tuple(logits_s.shape)} and teacher logits '
                             f'{tuple(logits_t.shape)} differ.')
        return self.loss_weight * mse_logits_loss(logits_s, logits_t)


@MODELS.register_module()
class LoggingDistiller(ClassificationDistiller):
    """A distiller that also logs the teacher-student top-1 agreement."""

    def distill_losses(self, values, data_samples):
        losses = super().distill_losses(values, data_samples)
        agree = values['logits_s'].argmax(1) == values['logits_t'].argmax(1)
        # No 'loss' in the name: logged, not added to the total loss.
        losses['agreement'] = agree.float().mean().detach()
        return losses
