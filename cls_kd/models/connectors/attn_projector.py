"""AttnDistill's student projector into the teacher's embedding space."""
from typing import Optional

import torch
import torch.nn as nn

from cls_kd.registry import MODELS

from .widths import MeasuredWidths, channels_last, channels_of

__all__ = ['AttnDistillProjector']


@MODELS.register_module()
class AttnDistillProjector(MeasuredWidths, nn.Module):
    """Four-layer MLP from the student's width to the teacher's.

    Reference: Wang et al., "Attention Distillation: self-supervised vision
    transformer students need more guidance", BMVC 2022.

    LN(d) → Linear(d, r·d) → GELU → Linear(r·d, d) → GELU → Linear(d, r·d)
    → GELU → Linear(r·d, d_t) → LN(d_t), both norms with eps 1e-6; Linear
    weights trunc-normal (std 0.02), biases zero.

    Every layer acts on each token alone, so projecting the CLS token by
    itself equals projecting all tokens and taking the CLS. Configs feed it
    the CLS token of the student's last block output (tap
    ``layers.<last>`` with ``selector='cls_token'``), i.e. *before* the
    backbone's final norm, which this projector's first LayerNorm replaces
    in the distillation path. Its output is the student side of
    :class:`~cls_kd.models.losses.AttnDistillAlignLoss`.

    Args:
        in_channels (int, optional): Student width d; left out (None),
            measured on the input by the dry run.
        out_channels (int, optional): Teacher width d_t; left out (None),
            that of the target a loss compares the output with.
        hidden_ratio (int): r, the hidden layers' width over d. Defaults to
            2 (the paper's).
    """

    def __init__(self,
                 in_channels: Optional[int] = None,
                 out_channels: Optional[int] = None,
                 hidden_ratio: int = 2):
        super().__init__()
        if not (isinstance(hidden_ratio, int) and hidden_ratio > 0):
            raise ValueError(f'hidden_ratio must be a positive int, got '
                             f'{hidden_ratio!r}')
        self.hidden_ratio = hidden_ratio
        self._init_widths(in_channels=in_channels, out_channels=out_channels)

    def _build_layers(self, in_channels: int, out_channels: int) -> None:
        hidden = in_channels * self.hidden_ratio
        self.layers = nn.Sequential(
            nn.LayerNorm(in_channels, eps=1e-6),
            nn.Linear(in_channels, hidden), nn.GELU(),
            nn.Linear(hidden, in_channels), nn.GELU(),
            nn.Linear(in_channels, hidden), nn.GELU(),
            nn.Linear(hidden, out_channels),
            nn.LayerNorm(out_channels, eps=1e-6))
        for m in self.layers:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def measure_widths(self, inputs, target) -> dict:
        widths = dict(in_channels=channels_last(inputs[0], 'its input'))
        if target is not None:
            widths['out_channels'] = channels_of(target, 'its target')
        return widths

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, d) or (B, N, d) -> (B, d_t) or (B, N, d_t)."""
        self._check_settled()
        if x.dim() not in (2, 3) or x.shape[-1] != self.in_channels:
            raise ValueError(
                f'AttnDistillProjector expects a CLS token (B, '
                f'{self.in_channels}) or tokens (B, N, {self.in_channels}), '
                f'got {tuple(x.shape)}.')
        return self.layers(x)
