"""Generic feature distillation: MSE, L1 and cosine (FitNets hints,
attention transfer and channel-wise distillation are in :mod:`.cnn_feature`).

Each loss compares a student feature with a teacher feature: tokens
(B, N, C), maps (B, C, H, W) or vectors (B, C). Layouts, grids and widths
are brought together by connectors, not inside the losses (except
:class:`HintLoss`, whose regressor is FitNets' own): see
:class:`~cls_kd.models.connectors.TokensToMap`, ``MapToTokens``,
``MapResize``, ``MapPool``, ``ConvConnector`` and ``LinearConnector``.
Every loss also takes lists of features, one entry per distilled block, and
sums the per-block terms. Teacher features are never back-propagated.
"""
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cls_kd.errors import check_number
from cls_kd.registry import MODELS

__all__ = [
    'FeatureMSELoss', 'FeatureL1Loss', 'FeatureCosineLoss',
    'feature_mse_loss', 'feature_l1_loss', 'feature_cosine_loss',
    'check_feature_pair'
]

Features = Union[Tensor, Sequence[Tensor]]
REDUCTIONS = ('sum_per_sample', 'mean')
_LAYOUTS = {2: 'vectors (B, C)', 3: 'tokens (B, N, C)',
            4: 'a map (B, C, H, W)'}


def _channel_dim(x: Tensor) -> int:
    return 1 if x.dim() == 4 else -1


def check_feature_pair(preds: Tensor,
                       targets: Tensor,
                       who: str,
                       match_channels: bool = True) -> None:
    """Raise a ``ValueError`` naming the connector that fixes the mismatch
    unless student and teacher features have the same shape.

    Args:
        preds (Tensor): Student feature.
        targets (Tensor): Teacher feature.
        who (str): Prefix of the error message.
        match_channels (bool): Also require equal channel counts (attention
            transfer compares maps whose channels may differ). Defaults to
            True.
    """
    s, t = tuple(preds.shape), tuple(targets.shape)
    head = f'{who}: student {s} vs teacher {t}'
    if preds.dim() != targets.dim():
        if {preds.dim(), targets.dim()} == {3, 4}:
            fix = ('convert one side with a TokensToMap connector (tokens to '
                   'map) or a MapToTokens connector (map to tokens), e.g. '
                   '"to_map(s_tokens)"')
        else:
            fix = 'tap features of the same layout in both models'
        layouts = [_LAYOUTS.get(x.dim(), f'{x.dim()}-D') for x in (preds,
                                                                    targets)]
        raise ValueError(f'{head}: layouts differ ({layouts[0]} vs '
                         f'{layouts[1]}); {fix}.')
    if s[:1] != t[:1]:
        raise ValueError(f'{head}: batch sizes differ; both models must see '
                         f'the same batch.')
    if preds.dim() == 4 and s[2:] != t[2:]:
        raise ValueError(
            f'{head}: spatial sizes differ ({s[2]}x{s[3]} vs {t[2]}x{t[3]}); '
            f'add a layout connector that brings one map to the other\'s '
            f'size, MapResize(size=({t[2]}, {t[3]})) or MapPool(size=('
            f'{t[2]}, {t[3]})), e.g. "resize(s_map)".')
    if preds.dim() == 3 and s[1] != t[1]:
        raise ValueError(
            f'{head}: token counts differ ({s[1]} vs {t[1]}); add a layout '
            f'connector: TokenGridResize to resample one token grid to the '
            f'other, or TokensToMap(num_prefix_tokens=...) to drop class '
            f'tokens and lay the tokens out as a map for MapResize/MapPool.')
    if s == t:
        return
    if preds.dim() not in _LAYOUTS:
        raise ValueError(f'{head}: shapes differ; bring them to one shape '
                         f'with connectors.')
    if not match_channels:  # only the channels can differ by now
        return
    cs, ct = s[_channel_dim(preds)], t[_channel_dim(targets)]
    connector = 'ConvConnector' if preds.dim() == 4 else 'LinearConnector'
    raise ValueError(
        f'{head}: channels differ ({cs} vs {ct}); project the student with '
        f'{connector}(in_channels={cs}, out_channels={ct}), or use '
        f'HintLoss(in_channels={cs}, out_channels={ct}), which trains its '
        f'own regressor.')


def _as_list(features: Features) -> List[Tensor]:
    return [features] if torch.is_tensor(features) else list(features)


def _pairs(preds: Features, targets: Features,
           who: str) -> List[Tuple[Tensor, Tensor, str]]:
    """Student/teacher pairs with a name for each in error messages."""
    preds, targets = _as_list(preds), _as_list(targets)
    if not preds or len(preds) != len(targets):
        raise ValueError(
            f'{who}: {len(preds)} student features vs {len(targets)} teacher '
            f'features; give one of each per distilled block, in the same '
            f'order.')
    if len(preds) == 1:
        return [(preds[0], targets[0], who)]
    return [(p, t, f'{who}, block pair {i}')
            for i, (p, t) in enumerate(zip(preds, targets))]


def _require_maps(preds: Tensor, targets: Tensor, who: str) -> None:
    if preds.dim() != 4 or targets.dim() != 4:
        raise ValueError(
            f'{who}: expects maps (B, C, H, W) from both models, got student '
            f'{tuple(preds.shape)} and teacher {tuple(targets.shape)}; lay '
            f'ViT tokens out as a map with a TokensToMap connector.')


def check_reduction(reduction: str) -> None:
    """Raise a ``ValueError`` unless ``reduction`` is one of REDUCTIONS."""
    if reduction not in REDUCTIONS:
        raise ValueError(f'reduction must be one of {REDUCTIONS}, got '
                         f'{reduction!r}')


def _elementwise_loss(preds: Features, targets: Features, reduction: str,
                      error: Callable[[Tensor], Tensor]) -> Tensor:
    """Σ over pairs of error(s − t), summed and divided by B
    (``'sum_per_sample'``) or averaged over all elements (``'mean'``)."""
    total = 0.
    for p, t in zip(_as_list(preds), _as_list(targets)):
        e = error(p.float() - t.detach().float())
        total = total + (e.sum() / e.shape[0]
                         if reduction == 'sum_per_sample' else e.mean())
    return total


def feature_mse_loss(preds: Features,
                     targets: Features,
                     reduction: str = 'sum_per_sample') -> Tensor:
    """Squared error, reduced per pair and summed over the pairs."""
    return _elementwise_loss(preds, targets, reduction, torch.square)


def feature_l1_loss(preds: Features,
                    targets: Features,
                    reduction: str = 'sum_per_sample') -> Tensor:
    """Absolute error, reduced per pair and summed over the pairs."""
    return _elementwise_loss(preds, targets, reduction, torch.abs)


def feature_cosine_loss(preds: Features,
                        targets: Features,
                        dim: Optional[int] = None) -> Tensor:
    """1 − cos(s, t) along ``dim`` (default: the channel dimension, 1 for
    maps, -1 otherwise), averaged over the other positions, summed over the
    pairs."""
    total = 0.
    for p, t in zip(_as_list(preds), _as_list(targets)):
        d = _channel_dim(p) if dim is None else dim
        cos = F.cosine_similarity(p.float(), t.detach().float(), dim=d)
        total = total + (1 - cos).mean()
    return total


class _FeaturePairLoss(nn.Module):
    """Shared ``forward``: check every student/teacher pair, then compute.

    Subclasses define ``compute(preds, targets)`` and may extend
    ``check_pair``; their docstrings give the expected shapes.
    """

    maps_only = False
    match_channels = True

    def check_pair(self, preds: Tensor, targets: Tensor, who: str) -> None:
        if self.maps_only:
            _require_maps(preds, targets, who)
        check_feature_pair(preds, targets, who, self.match_channels)

    def forward(self, preds: Features, targets: Features) -> Tensor:
        """Compute the loss.

        Args:
            preds (Tensor | list[Tensor]): Student features, one per block.
            targets (Tensor | list[Tensor]): Teacher features, in the same
                order; not back-propagated.

        Returns:
            Tensor: Scalar loss, float32.
        """
        for s, t, name in _pairs(preds, targets, type(self).__name__):
            self.check_pair(s, t, name)
        return self.compute(preds, targets)


class _ReducedFeatureLoss(_FeaturePairLoss):
    """Options shared by :class:`FeatureMSELoss` and :class:`FeatureL1Loss`."""

    def __init__(self,
                 reduction: str = 'sum_per_sample',
                 loss_weight: float = 1.0):
        super().__init__()
        check_reduction(reduction)
        check_number('loss_weight', loss_weight, low=0)
        self.reduction = reduction
        self.loss_weight = loss_weight


@MODELS.register_module()
class FeatureMSELoss(_ReducedFeatureLoss):
    """Squared error between student and teacher features of one shape
    (B, ...): tokens (B, N, C), maps (B, C, H, W), vectors (B, C), ...

    ``'sum_per_sample'``: Σ(s − t)² / B (mmrazor's ``L2Loss`` and ViTKD's
    convention); ``'mean'``: the mean over all elements (``F.mse_loss``).
    Lists of features give one term per pair, summed.

    Args:
        reduction (str): ``'sum_per_sample'`` or ``'mean'``. Defaults to
            ``'sum_per_sample'``.
        loss_weight (float): Weight of the loss. Defaults to 1.0.
    """

    def compute(self, preds: Features, targets: Features) -> Tensor:
        return self.loss_weight * feature_mse_loss(preds, targets,
                                                   self.reduction)


@MODELS.register_module()
class FeatureL1Loss(_ReducedFeatureLoss):
    """Absolute error between student and teacher features of one shape.

    ``'sum_per_sample'``: Σ|s − t| / B; ``'mean'``: the mean over all
    elements. Lists of features give one term per pair, summed.

    Args:
        reduction (str): ``'sum_per_sample'`` or ``'mean'``. Defaults to
            ``'sum_per_sample'``.
        loss_weight (float): Weight of the loss. Defaults to 1.0.
    """

    def compute(self, preds: Features, targets: Features) -> Tensor:
        return self.loss_weight * feature_l1_loss(preds, targets,
                                                  self.reduction)


@MODELS.register_module()
class FeatureCosineLoss(_FeaturePairLoss):
    """1 − cosine similarity of student and teacher features along one
    dimension, averaged over all other positions (and summed over pairs);
    in [0, 2] per pair.

    Args:
        dim (int, optional): Dimension of the compared vectors. Defaults to
            None: the channel dimension, 1 for maps (B, C, H, W) and -1 for
            tokens (B, N, C) and vectors (B, C).
        loss_weight (float): Weight of the loss. Defaults to 1.0.
    """

    def __init__(self, dim: Optional[int] = None, loss_weight: float = 1.0):
        super().__init__()
        check_number('loss_weight', loss_weight, low=0)
        self.dim = dim
        self.loss_weight = loss_weight

    def check_pair(self, preds: Tensor, targets: Tensor, who: str) -> None:
        super().check_pair(preds, targets, who)
        if self.dim is not None and not -preds.dim() <= self.dim < preds.dim():
            raise ValueError(f'{who}: dim={self.dim} is out of range for '
                             f'{preds.dim()}-D features '
                             f'{tuple(preds.shape)}.')

    def compute(self, preds: Features, targets: Features) -> Tensor:
        return self.loss_weight * feature_cosine_loss(preds, targets,
                                                      self.dim)
