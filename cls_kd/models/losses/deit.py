"""Distillation-token loss of DeiT."""
import torch.nn.functional as F
from torch import Tensor, nn

from cls_kd.errors import check_number
from cls_kd.registry import MODELS

from .utils import check_logits_shapes


def deit_hard_loss(logits_s: Tensor, logits_t: Tensor) -> Tensor:
    """CE of the student against the teacher's arg-max class."""
    return F.cross_entropy(logits_s.float(), logits_t.argmax(dim=1))


def deit_soft_loss(logits_s: Tensor, logits_t: Tensor,
                   temperature: float) -> Tensor:
    """T² · KL(softmax(z_t/T) ‖ softmax(z_s/T)) summed over all elements
    and divided by their number, as DeiT does."""
    log_p_s = F.log_softmax(logits_s.float() / temperature, dim=1)
    log_p_t = F.log_softmax(logits_t.detach().float() / temperature, dim=1)
    kl = F.kl_div(log_p_s, log_p_t, reduction='sum', log_target=True)
    return temperature**2 * kl / logits_s.numel()


@MODELS.register_module()
class DeiTDistillLoss(nn.Module):
    """Train the student's distillation token on the teacher's predictions.

    Reference: Touvron et al., "Training data-efficient image transformers
    & distillation through attention", ICML 2021.

    The loss only covers the distillation head; weighting the class-token
    CE (½ for hard, 1 − λ for soft) is left to the distiller, and
    ``loss_weight`` plays ½ or λ.

    Args:
        mode (str): ``'hard'`` (CE against the teacher's arg-max) or
            ``'soft'`` (KL at temperature T). Defaults to ``'hard'``.
        temperature (float): Softmax temperature T, used by ``'soft'``.
            Defaults to 1.0.
        loss_weight (float): Weight of the loss. Defaults to 1.0.
    """

    modes = ('hard', 'soft')

    def __init__(self,
                 mode: str = 'hard',
                 temperature: float = 1.0,
                 loss_weight: float = 1.0):
        super().__init__()
        if mode not in self.modes:
            raise ValueError(
                f'mode must be one of {self.modes}, got {mode!r}')
        check_number('temperature', temperature, low=0, low_open=True)
        check_number('loss_weight', loss_weight, low=0)
        self.mode = mode
        self.temperature = temperature
        self.loss_weight = loss_weight

    def forward(self, logits_s: Tensor, logits_t: Tensor) -> Tensor:
        """Compute the loss.

        Args:
            logits_s (Tensor): Student distillation-token logits, (B, K).
            logits_t (Tensor): Teacher logits, (B, K); not back-propagated.

        Returns:
            Tensor: Scalar loss, float32.
        """
        check_logits_shapes(logits_s, logits_t)
        if self.mode == 'hard':
            loss = deit_hard_loss(logits_s, logits_t)
        else:
            loss = deit_soft_loss(logits_s, logits_t, self.temperature)
        return self.loss_weight * loss
