"""Projectors mapping student features into a teacher's width."""
from typing import Optional

import torch
import torch.nn as nn

from cls_kd.errors import describe
from cls_kd.registry import MODELS

from .widths import MeasuredWidths, channels_last, channels_of

__all__ = ['LinearConnector', 'ConvConnector']


@MODELS.register_module()
class LinearConnector(MeasuredWidths, nn.Module):
    """A linear map on the last (channel) dimension of tokens or vectors.

    Identity when ``in_channels == out_channels`` and ``identity_if_equal``
    (ViTKD uses no projector between equal widths).

    Args:
        in_channels (int, optional): Student width; left out (None), the
            last dim of the input the dry run measures.
        out_channels (int, optional): Teacher width; left out (None), the
            channels of the target a loss compares the output with.
        bias (bool): Whether the linear layer has a bias. Defaults to True.
        identity_if_equal (bool): Skip the projection for equal widths.
            Defaults to True.
    """

    def __init__(self,
                 in_channels: Optional[int] = None,
                 out_channels: Optional[int] = None,
                 bias: bool = True,
                 identity_if_equal: bool = True):
        super().__init__()
        self.use_bias = bias
        self.identity_if_equal = identity_if_equal
        self._init_widths(in_channels=in_channels, out_channels=out_channels)

    def _build_layers(self, in_channels: int, out_channels: int) -> None:
        if in_channels == out_channels and self.identity_if_equal:
            self.proj = nn.Identity()
        else:
            self.proj = nn.Linear(in_channels, out_channels,
                                  bias=self.use_bias)

    def measure_widths(self, inputs, target) -> dict:
        widths = dict(in_channels=channels_last(inputs[0], 'its input'))
        if target is not None:
            widths['out_channels'] = channels_of(target, 'its target')
        return widths

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., C_s) -> (..., C_t)."""
        self._check_settled()
        if x.shape[-1] != self.in_channels:
            raise ValueError(f'LinearConnector expects {self.in_channels} '
                             f'channels last, got shape {tuple(x.shape)}.')
        return self.proj(x)


@MODELS.register_module()
class ConvConnector(MeasuredWidths, nn.Module):
    """Conv (+ optional BatchNorm and ReLU) on feature maps (B, C, H, W).

    Args:
        in_channels (int, optional): Student channels; left out (None),
            those of the input map the dry run measures.
        out_channels (int, optional): Teacher channels; left out (None),
            those of the target a loss compares the output with.
        kernel_size (int): Defaults to 1.
        norm (bool): Add BatchNorm2d after the conv. Defaults to False.
        act (bool): Add ReLU at the end. Defaults to False.
    """

    def __init__(self,
                 in_channels: Optional[int] = None,
                 out_channels: Optional[int] = None,
                 kernel_size: int = 1,
                 norm: bool = False,
                 act: bool = False):
        super().__init__()
        self.kernel_size = kernel_size
        self.with_norm = norm
        self.with_act = act
        self._init_widths(in_channels=in_channels, out_channels=out_channels)

    def _build_layers(self, in_channels: int, out_channels: int) -> None:
        k = self.kernel_size
        layers = [
            nn.Conv2d(in_channels, out_channels, k, padding=k // 2,
                      bias=not self.with_norm)
        ]
        if self.with_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        if self.with_act:
            layers.append(nn.ReLU(inplace=True))
        self.layers = nn.Sequential(*layers)

    def measure_widths(self, inputs, target) -> dict:
        x = inputs[0]
        if not torch.is_tensor(x) or x.dim() != 4:
            raise ValueError(f'its input is not a map (B, C, H, W): '
                             f'{describe(x)}')
        widths = dict(in_channels=x.shape[1])
        if target is not None:
            widths['out_channels'] = channels_of(target, 'its target')
        return widths

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_s, H, W) -> (B, C_t, H, W)."""
        self._check_settled()
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'ConvConnector expects (B, {self.in_channels}, '
                             f'H, W), got {tuple(x.shape)}.')
        return self.layers(x)
