"""Decoupled knowledge distillation (DKD)."""
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cls_kd.errors import check_number
from cls_kd.registry import MODELS

from .utils import check_logits_shapes, drop_target


def _binary_log_probs(z: Tensor, z_non_target: Tensor,
                      labels: Tensor) -> Tensor:
    """Log of [p_y, 1 − p_y] as (B, 2), from logits alone.

    Working with log-sum-exps keeps log(1 − p_y) finite when p_y rounds to
    1, where ``log(1 - p.gather(...))`` would give −inf and then NaN.
    """
    log_target = z.gather(1, labels[:, None]).squeeze(1)
    log_non_target = z_non_target.logsumexp(dim=1)
    return (torch.stack([log_target, log_non_target], dim=1) -
            z.logsumexp(dim=1, keepdim=True))


def dkd_loss(logits_s: Tensor, logits_t: Tensor, labels: Tensor,
             temperature: float, alpha: float, beta: float) -> Tensor:
    """T² · (α·TCKD + β·NCKD), each a batch-mean KL(teacher ‖ student)."""
    z_s = logits_s.float() / temperature  # B, K
    z_t = logits_t.detach().float() / temperature
    # Dropping the target column rather than masking it with −inf keeps
    # every log-probability finite inside the KL.
    nt_s = drop_target(z_s, labels)  # B, K-1
    nt_t = drop_target(z_t, labels)
    tckd = F.kl_div(
        _binary_log_probs(z_s, nt_s, labels),
        _binary_log_probs(z_t, nt_t, labels),
        reduction='batchmean',
        log_target=True)
    nckd = F.kl_div(
        F.log_softmax(nt_s, dim=1),
        F.log_softmax(nt_t, dim=1),
        reduction='batchmean',
        log_target=True)
    return temperature**2 * (alpha * tckd + beta * nckd)


@MODELS.register_module()
class DKDLoss(nn.Module):
    """Distil target-class and non-target-class knowledge with separate
    weights.

    Reference: Zhao et al., "Decoupled Knowledge Distillation", CVPR 2022.

    TCKD is the KL between the teacher's and the student's binary
    (target, non-target) probabilities; NCKD is the KL between their
    distributions over the non-target classes. A warm-up of the weight is
    left to the distiller.

    Args:
        temperature (float): Softmax temperature T, > 0. Defaults to 1.0.
        alpha (float): Weight α of TCKD, >= 0. Defaults to 1.0.
        beta (float): Weight β of NCKD, >= 0. Defaults to 0.5 (ImageNet).
        loss_weight (float): Weight of the loss, >= 0. Defaults to 1.0.
    """

    def __init__(self,
                 temperature: float = 1.0,
                 alpha: float = 1.0,
                 beta: float = 0.5,
                 loss_weight: float = 1.0):
        super().__init__()
        check_number('temperature', temperature, low=0, low_open=True)
        check_number('alpha', alpha, low=0)
        check_number('beta', beta, low=0)
        check_number('loss_weight', loss_weight, low=0)
        self.temperature = temperature
        self.alpha = alpha
        self.beta = beta
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
        return self.loss_weight * dkd_loss(logits_s, logits_t, labels,
                                           self.temperature, self.alpha,
                                           self.beta)
