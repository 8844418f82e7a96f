"""Captured attention and features as 2-D maps, for the pictures of
``tools/analysis/visualize_distill.py``."""
from dataclasses import dataclass
from typing import Tuple

import numpy as np
import torch

from cls_kd.models.taps import token_grid

__all__ = [
    'AttentionMap', 'attention_map', 'feature_positions', 'principal_axis',
    'feature_map'
]


@dataclass
class AttentionMap:
    """The class token's attention of one module for a batch.

    Args:
        cls_row (ndarray): The whole row, (B, heads, N), summing to 1.
        prefix (int): Leading class/distillation tokens in the row.
        maps (ndarray): Its patch entries on the grid, (B, heads, h, w).
    """
    cls_row: np.ndarray
    prefix: int
    maps: np.ndarray


def attention_map(cls_row: torch.Tensor, prefix: int) -> AttentionMap:
    """The patch entries of class token attention rows on their grid.

    Args:
        cls_row (Tensor): ``attn_probs`` with ``query='cls'``,
            (B, heads, N).
        prefix (int): Class/distillation tokens in front of the patches.
    """
    h, w = token_grid(cls_row.shape[-1] - prefix, who='attention row',
                      option=None)
    maps = cls_row[..., prefix:].reshape(*cls_row.shape[:2], h, w)
    return AttentionMap(cls_row.numpy(), prefix, maps.numpy())


def feature_positions(value: torch.Tensor,
                      prefix: int) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """The positions of a feature map as points, ``(B, h*w, C)``, and the
    grid ``(h, w)``.

    Args:
        value (Tensor): A map (B, C, H, W) or tokens (B, N, C).
        prefix (int): Leading tokens to drop (tokens only); the rest must
            form a square grid.
    """
    if value.dim() == 4:
        B, C, h, w = value.shape
        return value.flatten(2).transpose(1, 2), (h, w)  # B, h*w, C
    if value.dim() == 3:
        points = value[:, prefix:]
        return points, token_grid(points.shape[1], who='feature tokens',
                                  option=None)
    raise ValueError(f'a feature map needs B×C×H×W or B×N×C, got shape '
                     f'{tuple(value.shape)}')


def principal_axis(
        points: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The mean ``(B, 1, C)`` and first principal direction ``(B, C)`` of
    each image's points ``(B, P, C)``, its sign chosen so that the largest
    projection of the points is positive."""
    centre = points.mean(dim=1, keepdim=True)
    direction = torch.linalg.svd(points - centre,
                                 full_matrices=False)[2][:, 0]
    proj = torch.einsum('bpc,bc->bp', points - centre, direction)  # B, P
    peak = proj.gather(1, proj.abs().argmax(1, keepdim=True))
    return centre, direction * peak.sign()


def feature_map(value: torch.Tensor, prefix: int,
                reduce: str = 'pca') -> np.ndarray:
    """One value per position of a feature map, (B, h, w).

    Args:
        value (Tensor): A map (B, C, H, W) or tokens (B, N, C).
        prefix (int): Leading tokens to drop (tokens only); the rest must
            form a square grid.
        reduce (str): ``'pca'``: the projection on the first principal
            component of the image's positions (:func:`principal_axis`);
            ``'mean'``: the channel mean.
    """
    points, (h, w) = feature_positions(value, prefix)
    points = points.double()
    if reduce == 'mean':
        return points.mean(-1).reshape(-1, h, w).numpy()
    centre, direction = principal_axis(points)
    proj = torch.einsum('bpc,bc->bp', points - centre, direction)
    return proj.reshape(-1, h, w).numpy()
