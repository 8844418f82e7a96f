"""CNN feature losses users expect from mmrazor and timm: FitNets hints,
attention transfer and channel-wise distillation.

Inputs as in :mod:`.feature` (lists of features give one term per block,
summed; teacher features are never back-propagated).
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cls_kd.errors import check_number
from cls_kd.registry import MODELS

from .feature import (
    Features,
    _as_list,
    _channel_dim,
    _FeaturePairLoss,
    check_feature_pair,
    check_reduction,
    feature_mse_loss,
)

__all__ = [
    'HintLoss', 'AttentionTransferLoss', 'ChannelWiseDivergenceLoss',
    'attention_map', 'attention_transfer_loss',
    'channel_wise_divergence_loss'
]

def attention_map(x: Tensor, p: float = 2.0) -> Tensor:
    """Spatial attention of a map: Σ_c |x_c|^p, flattened and L2-normalised
    per sample, (B, C, H, W) -> (B, H·W), float32."""
    a = x.float().abs().pow(p).sum(dim=1).flatten(1)  # B, HW
    return F.normalize(a, dim=1)


def attention_transfer_loss(preds: Features,
                            targets: Features,
                            p: float = 2.0) -> Tensor:
    """Σ over pairs of the mean over batch and positions of
    (a_s − a_t)², ``a`` the :func:`attention_map` (without β/2)."""
    total = 0.
    for s, t in zip(_as_list(preds), _as_list(targets)):
        diff = attention_map(s, p) - attention_map(t.detach(), p)
        total = total + diff.square().mean()
    return total


def channel_wise_divergence_loss(preds: Features,
                                 targets: Features,
                                 temperature: float = 1.0) -> Tensor:
    """Σ over pairs of τ² · Σ_{b,c} KL(softmax_HW(t_bc/τ) ‖
    softmax_HW(s_bc/τ)) / (B·C)."""
    total = 0.
    for s, t in zip(_as_list(preds), _as_list(targets)):
        B, C = s.shape[:2]
        log_p_s = F.log_softmax(s.float().flatten(2) / temperature, dim=2)
        log_p_t = F.log_softmax(
            t.detach().float().flatten(2) / temperature, dim=2)
        kl = F.kl_div(log_p_s, log_p_t, reduction='sum', log_target=True)
        total = total + temperature**2 * kl / (B * C)
    return total



@MODELS.register_module()
class HintLoss(nn.Module):
    """FitNets hint: regress the student feature to the teacher's width,
    then take the squared error.

    Reference: Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR
    2015.

    The regressor is one C_s → C_t linear map (weight C_t×C_s and a bias),
    applied as a 1×1 convolution to maps (B, C, H, W) and as a linear layer
    to tokens (B, N, C) and vectors (B, C). It is a parameter of this loss,
    trained with the student (the distiller optimises loss parameters) and
    not part of the exported student.

    Args:
        in_channels (int): Student width C_s.
        out_channels (int): Teacher width C_t.
        reduction (str): ``'mean'`` (the element mean, as the common FitNets
            re-implementations use) or ``'sum_per_sample'``. Defaults to
            ``'mean'``.
        identity_if_equal (bool): No regressor when C_s = C_t. Defaults to
            False (FitNets always regresses).
        loss_weight (float): Weight of the loss. Defaults to 1.0.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 reduction: str = 'mean',
                 identity_if_equal: bool = False,
                 loss_weight: float = 1.0):
        super().__init__()
        check_reduction(reduction)
        check_number('in_channels', in_channels, low=1, integer=True)
        check_number('out_channels', out_channels, low=1, integer=True)
        check_number('loss_weight', loss_weight, low=0)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.reduction = reduction
        self.loss_weight = loss_weight
        if in_channels == out_channels and identity_if_equal:
            self.regressor = nn.Identity()
        else:
            self.regressor = nn.Linear(in_channels, out_channels)

    def regress(self, x: Tensor) -> Tensor:
        """(B, C_s, H, W) -> (B, C_t, H, W); (..., C_s) -> (..., C_t)."""
        if isinstance(self.regressor, nn.Identity):
            return x
        if x.dim() == 4:
            weight = self.regressor.weight[:, :, None, None]
            return F.conv2d(x, weight, self.regressor.bias)
        return self.regressor(x)

    def forward(self, preds: Tensor, targets: Tensor) -> Tensor:
        """Compute the loss.

        Args:
            preds (Tensor): Student feature, (B, C_s, H, W), (B, N, C_s) or
                (B, C_s).
            targets (Tensor): Teacher feature of the same layout with C_t
                channels; not back-propagated.

        Returns:
            Tensor: Scalar loss, float32.
        """
        if not (torch.is_tensor(preds) and torch.is_tensor(targets)):
            raise ValueError('HintLoss has one regressor, so it takes one '
                             'student and one teacher feature; configure one '
                             'HintLoss per distilled block.')
        for x, width, arg in ((preds, self.in_channels, 'in_channels'),
                              (targets, self.out_channels, 'out_channels')):
            if x.dim() < 2 or x.shape[_channel_dim(x)] != width:
                model = 'student' if arg == 'in_channels' else 'teacher'
                raise ValueError(
                    f'HintLoss: {arg}={width} but the {model} feature is '
                    f'{tuple(x.shape)} (channels on dim 1 for maps, last '
                    f'for tokens and vectors); set {arg} to its width.')
        preds = self.regress(preds)
        check_feature_pair(preds, targets, 'HintLoss')
        return self.loss_weight * feature_mse_loss(preds, targets,
                                                   self.reduction)


@MODELS.register_module()
class AttentionTransferLoss(_FeaturePairLoss):
    """Attention transfer: match where the student's and the teacher's maps
    (B, C, H, W) are active, whatever their channel counts.

    Reference: Zagoruyko & Komodakis, "Paying More Attention to Attention",
    ICLR 2017.

    With ``a = Q / ‖Q‖₂``, ``Q = vec(Σ_c |F_c|^p)`` (B, H·W), the loss is
    ``β/2 · Σ_blocks mean_{b, j} (a_s[b, j] − a_t[b, j])²``: the form of
    the authors' code (``(at(x) - at(y)).pow(2).mean()`` times β/2), for
    which their β = 1000 was tuned. The paper writes the p-norm of the
    difference, unsquared and not averaged over positions.

    Args:
        p (float): Exponent p of the attention map. Defaults to 2.0.
        beta (float): β. Defaults to 1000.0 (the paper's).
    """

    maps_only = True
    match_channels = False

    def __init__(self, p: float = 2.0, beta: float = 1e3):
        super().__init__()
        check_number('p', p, low=0, low_open=True)
        check_number('beta', beta, low=0, low_open=True)
        self.p = p
        self.beta = beta

    def compute(self, preds: Features, targets: Features) -> Tensor:
        return self.beta / 2 * attention_transfer_loss(preds, targets, self.p)


@MODELS.register_module()
class ChannelWiseDivergenceLoss(_FeaturePairLoss):
    """Channel-wise distillation (CWD): per channel of maps (B, C, H, W),
    match the student's distribution over positions to the teacher's.

    Reference: Shu et al., "Channel-wise Knowledge Distillation for Dense
    Prediction", ICCV 2021.

    Each channel's map becomes a distribution over its H·W positions,
    ``softmax(x_c / τ)``; the loss is ``τ² · Σ_{b, c} KL(teacher ‖ student)
    / (B·C)``, the KL summed over positions (as in the paper and mmrazor's
    ``ChannelWiseDivergence``), summed over blocks. The student needs the
    teacher's channels (project it with a ``ConvConnector``).

    Args:
        temperature (float): τ. Defaults to 1.0 (mmrazor's default; the
            paper uses τ = 4 with loss weight 3 for segmentation).
        loss_weight (float): Weight of the loss. Defaults to 1.0.
    """

    maps_only = True

    def __init__(self, temperature: float = 1.0, loss_weight: float = 1.0):
        super().__init__()
        check_number('temperature', temperature, low=0, low_open=True)
        check_number('loss_weight', loss_weight, low=0)
        self.temperature = temperature
        self.loss_weight = loss_weight

    def compute(self, preds: Features, targets: Features) -> Tensor:
        return self.loss_weight * channel_wise_divergence_loss(
            preds, targets, self.temperature)
