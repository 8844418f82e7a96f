"""Normalized knowledge distillation (NKD)."""
import torch.nn.functional as F
from torch import Tensor, nn

from cls_kd.errors import check_number
from cls_kd.registry import MODELS

from .utils import check_logits_shapes, drop_target


def nkd_loss(logits_s: Tensor, logits_t: Tensor, labels: Tensor,
             temperature: float, gamma: float) -> Tensor:
    """L_t + L_nt: the target term at T=1 plus the γ·T²-weighted soft CE
    between the normalized non-target distributions."""
    logits_s = logits_s.float()  # B, K
    logits_t = logits_t.detach().float()
    target = labels[:, None]  # B, 1
    log_p_s_y = F.log_softmax(logits_s, dim=1).gather(1, target)
    p_t_y = F.softmax(logits_t, dim=1).gather(1, target)
    loss_target = -(p_t_y * log_p_s_y).mean()
    # q is a softmax over the K−1 non-target logits only: dropping the
    # column renormalizes, whereas zeroing it after the softmax would not.
    log_q_s = F.log_softmax(
        drop_target(logits_s, labels) / temperature, dim=1)  # B, K-1
    q_t = F.softmax(drop_target(logits_t, labels) / temperature, dim=1)
    loss_non_target = -(q_t * log_q_s).sum(dim=1).mean()
    return loss_target + gamma * temperature**2 * loss_non_target


@MODELS.register_module()
class NKDLoss(nn.Module):
    """Distil the target probability and the normalized non-target
    distribution of the teacher.

    Reference: Yang et al., "From Knowledge Distillation to Self-Knowledge
    Distillation: A Unified Approach with Normalized Loss and Customized
    Soft Labels", ICCV 2023.

    Args:
        temperature (float): Temperature T of the non-target softmax; the
            target term always uses T=1; > 0. Defaults to 1.0.
        gamma (float): Weight γ of the non-target term, >= 0. Defaults to
            1.0.
        loss_weight (float): Weight of the loss, >= 0. Defaults to 1.0.
    """

    def __init__(self,
                 temperature: float = 1.0,
                 gamma: float = 1.0,
                 loss_weight: float = 1.0):
        super().__init__()
        check_number('temperature', temperature, low=0, low_open=True)
        check_number('gamma', gamma, low=0)
        check_number('loss_weight', loss_weight, low=0)
        self.temperature = temperature
        self.gamma = gamma
        self.loss_weight = loss_weight

    def forward(self, logits_s: Tensor, logits_t: Tensor,
                labels: Tensor) -> Tensor:
        """Compute the loss.

        Args:
            logits_s (Tensor): Student logits, (B, K).
            logits_t (Tensor): Teacher logits, (B, K); not back-propagated.
            labels (Tensor): Hard target class indices, (B, ), int64.

        Returns:
            Tensor: Scalar loss, float32.
        """
        check_logits_shapes(logits_s, logits_t, labels)
        return self.loss_weight * nkd_loss(logits_s, logits_t, labels,
                                           self.temperature, self.gamma)
