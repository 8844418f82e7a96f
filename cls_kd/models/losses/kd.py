"""Hinton knowledge distillation on logits."""
import torch.nn.functional as F
from torch import Tensor, nn

from cls_kd.errors import check_number
from cls_kd.registry import MODELS

from .utils import check_logits_shapes

FORMS = ('kl', 'soft_ce')


def kd_loss(logits_s: Tensor, logits_t: Tensor, temperature: float,
            form: str = 'kl') -> Tensor:
    """T² · KL(softmax(z_t/T) ‖ softmax(z_s/T)), summed over classes and
    averaged over the batch; the teacher logits are constants.

    ``form='soft_ce'`` gives T² · H(softmax(z_t/T), softmax(z_s/T)), the
    cross-entropy with the teacher's soft labels: the KL plus the teacher's
    entropy, a constant, so the same gradients and another logged value."""
    log_p_s = F.log_softmax(logits_s.float() / temperature, dim=1)
    log_p_t = F.log_softmax(logits_t.detach().float() / temperature, dim=1)
    if form == 'soft_ce':
        ce = -(log_p_t.exp() * log_p_s).sum(dim=1).mean()
        return temperature**2 * ce
    kl = F.kl_div(log_p_s, log_p_t, reduction='batchmean', log_target=True)
    return temperature**2 * kl


@MODELS.register_module()
class KDLoss(nn.Module):
    """Match the student's softened class distribution to the teacher's.

    Reference: Hinton et al., "Distilling the Knowledge in a Neural Network",
    NIPS Workshop 2015.

    The loss is the KL form of KD. Its weight plays the paper's α; scaling
    the student's own cross-entropy by (1 − α) is left to the distiller.

    Args:
        temperature (float): Softmax temperature T. Defaults to 1.0.
        loss_weight (float): Weight of the loss. Defaults to 1.0.
        form (str): ``'kl'`` or ``'soft_ce'`` (the value plus the teacher's
            entropy; same gradients), e.g. to compare logged values with
            code that uses the cross-entropy form (ScaleKD). Defaults to
            ``'kl'``.
    """

    def __init__(self, temperature: float = 1.0, loss_weight: float = 1.0,
                 form: str = 'kl'):
        super().__init__()
        check_number('temperature', temperature, low=0, low_open=True)
        check_number('loss_weight', loss_weight, low=0)
        if form not in FORMS:
            raise ValueError(f'KDLoss: form must be one of {FORMS}, got '
                             f'{form!r}.')
        self.temperature = temperature
        self.loss_weight = loss_weight
        self.form = form

    def forward(self, logits_s: Tensor, logits_t: Tensor) -> Tensor:
        """Compute the loss.

        Args:
            logits_s (Tensor): Student logits, (B, K).
            logits_t (Tensor): Teacher logits, (B, K); not back-propagated.

        Returns:
            Tensor: Scalar loss, float32.
        """
        check_logits_shapes(logits_s, logits_t)
        return self.loss_weight * kd_loss(logits_s, logits_t,
                                          self.temperature, self.form)
