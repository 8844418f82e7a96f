"""ScaleKD's dual-view feature mimicking (DFM).

Reference: Fan et al., "ScaleKD: Strong Vision Transformers Could Be
Excellent Teachers", NeurIPS 2024.
"""
import torch.nn.functional as F
from torch import Tensor, nn

from cls_kd.errors import check_number
from cls_kd.registry import MODELS

from .feature import check_feature_pair

__all__ = ['DualViewMimicLoss', 'dual_view_mimic_loss', 'remove_direct']

VIEWS = ('spatial', 'frequency')


def _dims(x: Tensor):
    """(channel dim, spatial dims) of tokens (B, N, C) or a map
    (B, C, H, W)."""
    return (1, (2, 3)) if x.dim() == 4 else (2, (1, ))


def remove_direct(x: Tensor) -> Tensor:
    """Remove the direct (zero-frequency) component of each channel.

    Zeroing the (0, 0) coefficient of the 2-D DCT-II and inverting equals
    subtracting each channel's spatial mean (the DC basis function is
    constant), exactly and on any grid, so no transform is computed.
    """
    return x - x.mean(dim=_dims(x)[1], keepdim=True)


def dual_view_mimic_loss(preds: Tensor, targets: Tensor,
                         view: str = 'spatial') -> Tensor:
    """Sum of squared differences of the channel-L2-normalised features
    (``frequency``: after :func:`remove_direct`), over the batch size.

    Args:
        preds (Tensor): Student-side tokens (B, N, C) or map (B, C, H, W).
        targets (Tensor): Teacher feature of the same shape; constant.
        view (str): ``'spatial'`` or ``'frequency'``.
    """
    preds, targets = preds.float(), targets.detach().float()
    if view == 'frequency':
        preds, targets = remove_direct(preds), remove_direct(targets)
    dim = _dims(preds)[0]
    diff = F.normalize(preds, dim=dim) - F.normalize(targets, dim=dim)
    return diff.pow(2).sum() / preds.shape[0]


@MODELS.register_module()
class DualViewMimicLoss(nn.Module):
    """One view of ScaleKD's feature mimicking.

    ``spatial``: L_sp(Z, T) = ||n(Z) - n(T)||² / B, n = L2 normalisation
    over channels at each position. ``frequency``: L_fr = L_sp(φ(Z), φ(T)),
    φ removing the DCT's direct component (each channel's spatial mean, see
    :func:`remove_direct`). The paper weights them α_sp = 0.08 / α_fr = 0.06
    (Swin teachers) or 0.016 / 0.008 (BEiT/EVA-L), each view with its own
    projector.

    Args:
        view (str): ``'spatial'`` or ``'frequency'``.
        loss_weight (float): α of the view. Defaults to 1.0.
    """

    def __init__(self, view: str = 'spatial', loss_weight: float = 1.0):
        super().__init__()
        if view not in VIEWS:
            raise ValueError(f'DualViewMimicLoss: view must be one of '
                             f'{VIEWS}, got {view!r}.')
        check_number('loss_weight', loss_weight, low=0)
        self.view = view
        self.loss_weight = loss_weight

    def forward(self, preds: Tensor, targets: Tensor) -> Tensor:
        """preds, targets: tokens (B, N, C) or maps (B, C, H, W), equal
        shapes. Returns a float32 scalar."""
        if preds.dim() not in (3, 4):
            raise ValueError(f'DualViewMimicLoss expects tokens (B, N, C) or'
                             f' a map (B, C, H, W), got '
                             f'{tuple(preds.shape)}.')
        check_feature_pair(preds, targets, 'DualViewMimicLoss')
        return self.loss_weight * dual_view_mimic_loss(
            preds, targets, self.view)

    def extra_repr(self) -> str:
        return f'view={self.view!r}, loss_weight={self.loss_weight}'

