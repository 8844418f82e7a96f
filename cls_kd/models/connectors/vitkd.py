"""ViTKD's masked generator and a token-grid resampler."""
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from cls_kd.registry import MODELS

from ..taps import token_grid
from .widths import MeasuredWidths, channels_last, channels_of

__all__ = ['ViTKDGenerator', 'TokenGridResize', 'random_masking']


def random_masking(batch: int,
                   length: int,
                   mask_ratio: float,
                   device=None,
                   generator: Optional[torch.Generator] = None):
    """Per-sample random token masking (as in MAE).

    Sorting uniform noise gives a random permutation per sample; the first
    ``floor(length * (1 - mask_ratio))`` tokens of it are kept.

    Args:
        batch (int): B.
        length (int): N, tokens per sample.
        mask_ratio (float): λ, the fraction of tokens to mask.
        device: Device of the returned tensors.
        generator (torch.Generator, optional): Source of the noise, for
            reproducible masks.

    Returns:
        tuple[Tensor, Tensor]: ``keep`` (B, N_keep), the indices of the kept
        tokens in shuffled order, and ``restore`` (B, N), the permutation
        that puts [kept tokens, masked tokens] back into the original order.
    """
    num_keep = int(length * (1 - mask_ratio))
    # No generator argument unless one is given: torch.compile cannot trace
    # rand(..., generator=None) with a symbolic batch size (a last, smaller
    # batch).
    extra = {} if generator is None else dict(generator=generator)
    noise = torch.rand(batch, length, device=device, **extra)
    shuffle = noise.argsort(dim=1)
    restore = shuffle.argsort(dim=1)
    return shuffle[:, :num_keep], restore


@MODELS.register_module()
class ViTKDGenerator(MeasuredWidths, nn.Module):
    """ViTKD's generation branch for the deepest student tokens.

    Projects the student tokens to the teacher's width, replaces a random
    fraction λ of them (per sample) by one learned mask token (zero-init),
    lays the tokens out on their H×W grid and regenerates all of them with
    Conv3×3 → ReLU → Conv3×3.

    Args:
        in_channels (int, optional): Student width D_s; left out (None),
            measured on the input tokens by the dry run.
        out_channels (int, optional): Teacher width D_t; left out (None),
            that of the target a loss compares ``preds`` with.
        mask_ratio (float): λ. Defaults to 0.5.
        grid_size (tuple, optional): (H, W) of the token grid; by default
            the grid is square, √N × √N.
        identity_if_equal (bool): No projection when D_s = D_t (as in the
            paper). Defaults to True.
    """

    def __init__(self,
                 in_channels: Optional[int] = None,
                 out_channels: Optional[int] = None,
                 mask_ratio: float = 0.5,
                 grid_size: Optional[Sequence[int]] = None,
                 identity_if_equal: bool = True):
        super().__init__()
        if not 0 < mask_ratio < 1:
            raise ValueError(f'mask_ratio must be in (0, 1), got '
                             f'{mask_ratio!r}')
        self.mask_ratio = mask_ratio
        self.grid_size = grid_size
        self.identity_if_equal = identity_if_equal
        self._init_widths(in_channels=in_channels, out_channels=out_channels)

    def _build_layers(self, in_channels: int, out_channels: int) -> None:
        if in_channels == out_channels and self.identity_if_equal:
            self.align = nn.Identity()
        else:
            self.align = nn.Linear(in_channels, out_channels)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, out_channels))
        self.generation = nn.Sequential(
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1))

    def measure_widths(self, inputs, target) -> dict:
        widths = dict(in_channels=channels_last(inputs[0], 'its input'))
        if target is not None:
            widths['out_channels'] = channels_of(target, 'its target')
        return widths

    def forward(self,
                x: torch.Tensor,
                generator: Optional[torch.Generator] = None) -> dict:
        """Mask and regenerate.

        Args:
            x (Tensor): Student patch tokens, (B, N, D_s).
            generator (torch.Generator, optional): For a reproducible mask.

        Returns:
            dict: ``preds`` (B, N, D_t), the generated tokens, and ``mask``
            (B, N), 1 where a token was masked, 0 where it was kept.
        """
        self._check_settled()
        if x.dim() != 3 or x.shape[-1] != self.in_channels:
            raise ValueError(f'ViTKDGenerator expects patch tokens (B, N, '
                             f'{self.in_channels}), got {tuple(x.shape)}.')
        B, N, _ = x.shape
        h, w = token_grid(N, self.grid_size, 'ViTKDGenerator', 'grid_size')
        x = self.align(x)
        D = x.shape[-1]
        keep, restore = random_masking(
            B, N, self.mask_ratio, device=x.device, generator=generator)
        kept = x.gather(1, keep.unsqueeze(-1).expand(-1, -1, D))
        masked = self.mask_token.to(x.dtype).expand(B, N - keep.shape[1], D)
        x = torch.cat([kept, masked], dim=1)
        x = x.gather(1, restore.unsqueeze(-1).expand(-1, -1, D))
        x = x.transpose(1, 2).reshape(B, D, h, w)
        preds = self.generation(x).flatten(2).transpose(1, 2)
        # 1 for masked: positions >= N_keep in shuffled order.
        mask = (restore >= keep.shape[1]).to(preds.dtype)
        return dict(preds=preds, mask=mask)


@MODELS.register_module()
class TokenGridResize(nn.Module):
    """Resample tokens on their square grid to another grid.

    The explicit option for token-level losses whose two models have
    different grids (another patch or input size): typically wraps the
    teacher's tokens, ``'resize(t_last, s_last)'`` giving the teacher's
    tokens on the student's grid. Parameter-free.

    Args:
        mode (str): ``F.interpolate`` mode. Defaults to ``'bilinear'``.
        align_corners (bool): Defaults to False.
    """

    #: Channels pass through unchanged (see ``connectors.widths``).
    keeps_channels = True

    def __init__(self, mode: str = 'bilinear', align_corners: bool = False):
        super().__init__()
        self.mode = mode
        self.align_corners = align_corners

    def forward(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Tokens ``x`` (B, N, D) on the grid of ``like`` (B, M, D')."""
        if x.dim() != 3 or like.dim() != 3:
            raise ValueError(f'TokenGridResize expects tokens (B, N, D), got '
                             f'{tuple(x.shape)} and {tuple(like.shape)}.')
        B, N, D = x.shape
        if N == like.shape[1]:
            return x
        src = token_grid(N, None, 'TokenGridResize', None)
        dst = token_grid(like.shape[1], None, 'TokenGridResize', None)
        grid = x.transpose(1, 2).reshape(B, D, *src)
        kwargs = {} if self.mode in ('nearest', 'area') else dict(
            align_corners=self.align_corners)
        grid = F.interpolate(grid, size=dst, mode=self.mode, **kwargs)
        return grid.flatten(2).transpose(1, 2)
