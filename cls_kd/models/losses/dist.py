"""DIST: inter- and intra-class relations of the class probabilities."""
import torch.nn.functional as F
from torch import Tensor, nn

from cls_kd.errors import check_number
from cls_kd.registry import MODELS

from .utils import check_logits_shapes


def pearson_rows(a: Tensor, b: Tensor, eps: float = 1e-8) -> Tensor:
    """Pearson correlation of each row of ``a`` with the same row of ``b``.

    Args:
        a (Tensor): (N, D).
        b (Tensor): (N, D).
        eps (float): Added to the product of the norms, as in the official
            code (a constant row then correlates 0, not NaN).

    Returns:
        Tensor: (N, ).
    """
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def dist_loss(logits_s: Tensor, logits_t: Tensor, temperature: float = 1.0,
              beta: float = 1.0, gamma: float = 1.0) -> Tensor:
    """τ² · (β · inter + γ · intra) on softmax(z/τ); the teacher logits are
    constants.

    inter = 1 − mean over samples of the Pearson correlation between the
    student's and the teacher's class probabilities of that sample; intra
    = the same over classes, each class's probabilities across the batch.
    """
    p_s = F.softmax(logits_s.float() / temperature, dim=1)  # B, K
    p_t = F.softmax(logits_t.detach().float() / temperature, dim=1)
    inter = 1 - pearson_rows(p_s, p_t).mean()
    intra = 1 - pearson_rows(p_s.t(), p_t.t()).mean()
    return temperature**2 * (beta * inter + gamma * intra)


@MODELS.register_module()
class DISTLoss(nn.Module):
    """Match the relations of the student's class probabilities to the
    teacher's, not their values.

    Reference: Huang et al., "Knowledge Distillation from A Stronger
    Teacher", NeurIPS 2022 (official code: hunto/DIST_KD).

    A Pearson correlation ignores shifts and positive scales, so a student
    whose probabilities are an affine image of the teacher's (e.g. a less
    confident copy) pays nothing: the "relaxed" match that lets a student
    follow a much stronger teacher. Labels are not used.

    Args:
        temperature (float): Softmax temperature τ; the loss is scaled by
            τ². Defaults to 1.0 (the official ImageNet setting).
        beta (float): Weight β of the inter-class relation. Defaults to 1.0.
        gamma (float): Weight γ of the intra-class relation. Defaults to 1.0.
        loss_weight (float): Weight of the loss (the official code's
            ``kd_loss_weight``, 2.0 in its ImageNet configs). Defaults to
            1.0.
    """

    def __init__(self,
                 temperature: float = 1.0,
                 beta: float = 1.0,
                 gamma: float = 1.0,
                 loss_weight: float = 1.0):
        super().__init__()
        check_number('temperature', temperature, low=0, low_open=True)
        check_number('beta', beta, low=0)
        check_number('gamma', gamma, low=0)
        check_number('loss_weight', loss_weight, low=0)
        self.temperature = temperature
        self.beta = beta
        self.gamma = gamma
        self.loss_weight = loss_weight

    def forward(self, logits_s: Tensor, logits_t: Tensor) -> Tensor:
        """Compute the loss.

        Args:
            logits_s (Tensor): Student logits, (B, K); for B = 1 the
                intra-class relation is the constant 1.
            logits_t (Tensor): Teacher logits, (B, K); not back-propagated.

        Returns:
            Tensor: Scalar loss, float32.
        """
        check_logits_shapes(logits_s, logits_t)
        return self.loss_weight * dist_loss(logits_s, logits_t,
                                            self.temperature, self.beta,
                                            self.gamma)
