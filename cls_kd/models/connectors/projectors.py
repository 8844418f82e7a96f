"""Projectors mapping student features into a teacher's width."""
import torch
import torch.nn as nn

from cls_kd.registry import MODELS

__all__ = ['LinearConnector', 'ConvConnector']


@MODELS.register_module()
class LinearConnector(nn.Module):
    """A linear map on the last (channel) dimension of tokens or vectors.

    Identity when ``in_channels == out_channels`` and ``identity_if_equal``
    (ViTKD uses no projector between equal widths).

    Args:
        in_channels (int): Student width.
        out_channels (int): Teacher width.
        bias (bool): Whether the linear layer has a bias. Defaults to True.
        identity_if_equal (bool): Skip the projection for equal widths.
            Defaults to True.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 bias: bool = True,
                 identity_if_equal: bool = True):
        super().__init__()
        self.in_channels = in_channels
        if in_channels == out_channels and identity_if_equal:
            self.proj = nn.Identity()
        else:
            self.proj = nn.Linear(in_channels, out_channels, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., C_s) -> (..., C_t)."""
        if x.shape[-1] != self.in_channels:
            raise ValueError(f'LinearConnector expects {self.in_channels} '
                             f'channels last, got shape {tuple(x.shape)}.')
        return self.proj(x)


@MODELS.register_module()
class ConvConnector(nn.Module):
    """Conv (+ optional BatchNorm and ReLU) on feature maps (B, C, H, W).

    Args:
        in_channels (int): Student channels.
        out_channels (int): Teacher channels.
        kernel_size (int): Defaults to 1.
        norm (bool): Add BatchNorm2d after the conv. Defaults to False.
        act (bool): Add ReLU at the end. Defaults to False.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: int = 1,
                 norm: bool = False,
                 act: bool = False):
        super().__init__()
        self.in_channels = in_channels
        layers = [
            nn.Conv2d(in_channels, out_channels, kernel_size,
                      padding=kernel_size // 2, bias=not norm)
        ]
        if norm:
            layers.append(nn.BatchNorm2d(out_channels))
        if act:
            layers.append(nn.ReLU(inplace=True))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_s, H, W) -> (B, C_t, H, W)."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'ConvConnector expects (B, {self.in_channels}, '
                             f'H, W), got {tuple(x.shape)}.')
        return self.layers(x)
