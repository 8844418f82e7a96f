"""Parameter-free layout connectors: tokens <-> maps, map resizing and
pooling.

They let a config compare features of different layouts or grids without
Python, e.g. a CNN teacher's 4×4 map with a ViT student's 14×14 tokens::

    connectors = dict(
        to_map=dict(type='TokensToMap', num_prefix_tokens=1),
        pool=dict(type='MapPool', size=4),
        proj=dict(type='ConvConnector', in_channels=192, out_channels=512))
    losses = dict(loss_feat=dict(
        type='FeatureMSELoss',
        inputs=dict(preds='proj(pool(to_map(s_tokens)))', targets='t_map')))
"""
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from cls_kd.registry import MODELS

from ..taps import token_grid

__all__ = ['TokensToMap', 'MapToTokens', 'MapResize', 'MapPool']

Size = Union[int, Sequence[int]]


def _pair(size: Size, who: str, option: str) -> Tuple[int, int]:
    """``size`` as (H, W) of positive ints: an int means a square."""
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if len(hw) != 2 or not all(isinstance(v, int) and v > 0 for v in hw):
        raise ValueError(f'{who}: {option} must be a positive int or (H, W) '
                         f'of positive ints, got {size!r}.')
    return hw


def _check_map(x: torch.Tensor, who: str) -> None:
    if x.dim() != 4:
        hint = ('; lay tokens out as a map with TokensToMap first'
                if x.dim() == 3 else '')
        raise ValueError(f'{who} expects a map (B, C, H, W), got '
                         f'{tuple(x.shape)}{hint}.')


@MODELS.register_module()
class TokensToMap(nn.Module):
    """Lay patch tokens out on their grid: (B, N, C) -> (B, C, H, W).

    Args:
        num_prefix_tokens (int): Leading tokens to drop first (1 for a class
            token, 2 with a distillation token). Defaults to 0.
        hw (int | tuple, optional): (H, W) of the grid; by default the grid
            is square, √N × √N.
    """

    #: Channels pass through unchanged (see ``connectors.widths``).
    keeps_channels = True

    def __init__(self, num_prefix_tokens: int = 0, hw: Optional[Size] = None):
        super().__init__()
        if not isinstance(num_prefix_tokens, int) or num_prefix_tokens < 0:
            raise ValueError(f'TokensToMap: num_prefix_tokens must be an int '
                             f'>= 0, got {num_prefix_tokens!r}.')
        self.num_prefix_tokens = num_prefix_tokens
        self.hw = None if hw is None else _pair(hw, 'TokensToMap', 'hw')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, P + H·W, C) -> (B, C, H, W), P = ``num_prefix_tokens``."""
        if x.dim() != 3:
            raise ValueError(f'TokensToMap expects tokens (B, N, C), got '
                             f'{tuple(x.shape)}.')
        B, N, C = x.shape
        k = self.num_prefix_tokens
        if k >= N:
            raise ValueError(f'TokensToMap: num_prefix_tokens={k} leaves no '
                             f'patch tokens of {tuple(x.shape)}.')
        try:
            h, w = token_grid(N - k, self.hw, 'TokensToMap', 'hw')
        except ValueError as e:
            raise ValueError(
                f'{e} ({N} tokens less num_prefix_tokens={k}; ViT outputs '
                f'with a class token need num_prefix_tokens=1)') from None
        return x[:, k:].transpose(1, 2).reshape(B, C, h, w)

    def extra_repr(self) -> str:
        return f'num_prefix_tokens={self.num_prefix_tokens}, hw={self.hw}'


@MODELS.register_module()
class MapToTokens(nn.Module):
    """Flatten a map to tokens in row-major order: (B, C, H, W) ->
    (B, H·W, C), the inverse of :class:`TokensToMap` without prefix."""

    #: Channels pass through unchanged (see ``connectors.widths``).
    keeps_channels = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, H·W, C)."""
        if x.dim() != 4:
            raise ValueError(f'MapToTokens expects a map (B, C, H, W), got '
                             f'{tuple(x.shape)}.')
        return x.flatten(2).transpose(1, 2)


@MODELS.register_module()
class MapResize(nn.Module):
    """Interpolate a map to a fixed spatial size (``F.interpolate``).

    Args:
        size (int | tuple): Output (H, W); an int means a square.
        mode (str): ``'bilinear'``, ``'bicubic'``, ``'nearest'`` or
            ``'area'``. Defaults to ``'bilinear'``.
        align_corners (bool): For ``'bilinear'`` and ``'bicubic'`` only.
            Defaults to False.
    """

    #: Channels pass through unchanged (see ``connectors.widths``).
    keeps_channels = True

    modes = ('bilinear', 'bicubic', 'nearest', 'area')

    def __init__(self,
                 size: Size,
                 mode: str = 'bilinear',
                 align_corners: bool = False):
        super().__init__()
        self.size = _pair(size, 'MapResize', 'size')
        if mode not in self.modes:
            raise ValueError(f'MapResize: mode must be one of {self.modes}, '
                             f'got {mode!r}.')
        if align_corners and mode not in ('bilinear', 'bicubic'):
            raise ValueError(f'MapResize: align_corners=True needs mode '
                             f'"bilinear" or "bicubic", got {mode!r}.')
        self.mode = mode
        self.align_corners = align_corners

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, *size); unchanged if already that size."""
        _check_map(x, 'MapResize')
        if tuple(x.shape[2:]) == self.size:
            return x
        kwargs = dict(align_corners=self.align_corners) if self.mode in (
            'bilinear', 'bicubic') else {}
        return F.interpolate(x, size=self.size, mode=self.mode, **kwargs)

    def extra_repr(self) -> str:
        return (f'size={self.size}, mode={self.mode!r}, '
                f'align_corners={self.align_corners}')


@MODELS.register_module()
class MapPool(nn.Module):
    """Adaptive pooling of a map to a fixed grid.

    Args:
        size (int | tuple): Output (H, W); an int means a square.
        mode (str): ``'avg'`` or ``'max'``. Defaults to ``'avg'``.
    """

    #: Channels pass through unchanged (see ``connectors.widths``).
    keeps_channels = True

    pools = dict(avg=F.adaptive_avg_pool2d, max=F.adaptive_max_pool2d)

    def __init__(self, size: Size, mode: str = 'avg'):
        super().__init__()
        self.size = _pair(size, 'MapPool', 'size')
        if mode not in self.pools:
            raise ValueError(f'MapPool: mode must be one of '
                             f'{tuple(self.pools)}, got {mode!r}.')
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, *size)."""
        _check_map(x, 'MapPool')
        return self.pools[self.mode](x, self.size)

    def extra_repr(self) -> str:
        return f'size={self.size}, mode={self.mode!r}'
