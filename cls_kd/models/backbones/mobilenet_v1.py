"""MobileNet V1 (Howard et al., 2017, "MobileNets: Efficient Convolutional
Neural Networks for Mobile Vision Applications"), which mmpretrain lacks.

A 3x3 stride-2 stem convolution followed by 13 depthwise-separable blocks
(3x3 depthwise conv + BN + ReLU, then 1x1 pointwise conv + BN + ReLU). The
blocks are grouped so that feature maps can be tapped by module path:

========  ====================================  ========  ============
path      content                               channels  size (224)
========  ====================================  ========  ============
stem      stem conv, block 32 -> 64             64        112 x 112
layer1    block stride 2, block                 128       56 x 56
layer2    block stride 2, block                 256       28 x 28
layer3    block stride 2, 5 blocks              512       14 x 14
layer4    block stride 2, block                 1024      7 x 7
========  ====================================  ========  ============

Channels are those of width 1.0; ``widen_factor`` scales all of them.
"""
from numbers import Real

import torch.nn as nn
from mmcv.cnn import ConvModule, DepthwiseSeparableConvModule
from mmpretrain.models.backbones.base_backbone import BaseBackbone
from mmpretrain.models.utils import make_divisible
from torch.nn.modules.batchnorm import _BatchNorm

from cls_kd.registry import MODELS

__all__ = ['MobileNetV1']


@MODELS.register_module()
class MobileNetV1(BaseBackbone):
    """MobileNet V1 backbone.

    Args:
        widen_factor (float): Width multiplier (the paper's alpha): every
            layer has ``make_divisible(channels * widen_factor, 8)``
            channels. Must be > 0. Defaults to 1.0.
        out_indices (Sequence[int] | int): Which of ``(layer1, layer2,
            layer3, layer4)`` to output, as indices 0-3 (negative indices
            count from the end). Defaults to ``(3, )``.
        frozen_stages (int): Stages to freeze (parameters without
            gradients, norm layers in eval mode, also after ``train()``):
            -1 freezes nothing, 0 the stem, ``i`` the stem and ``layer1`` to
            ``layer{i}``. Must be in ``range(-1, 5)``. Defaults to -1.
        conv_cfg (dict, optional): Config of the convolution layers.
            Defaults to None (``nn.Conv2d``).
        norm_cfg (dict): Config of the norm layers.
            Defaults to ``dict(type='BN')``.
        act_cfg (dict): Config of the activation layers.
            Defaults to ``dict(type='ReLU')``.
        norm_eval (bool): Keep every BN layer in eval mode (frozen running
            statistics) during training. Defaults to False.
        init_cfg (dict | list[dict], optional): Initialisation config.
            Defaults to Kaiming for ``Conv2d`` and constant 1 for norm
            layers, as mmpretrain's ``MobileNetV2``.

    Returns ``forward``: a tuple with the feature map of each stage in
    ``out_indices``, in stage order.
    """

    # (channels, stride) of the 13 depthwise-separable blocks, per stage.
    stage_settings = {
        'stem': [(64, 1)],
        'layer1': [(128, 2), (128, 1)],
        'layer2': [(256, 2), (256, 1)],
        'layer3': [(512, 2)] + [(512, 1)] * 5,
        'layer4': [(1024, 2), (1024, 1)],
    }
    stem_channels = 32
    num_stages = 4

    def __init__(self,
                 widen_factor=1.0,
                 out_indices=(3, ),
                 frozen_stages=-1,
                 conv_cfg=None,
                 norm_cfg=dict(type='BN'),
                 act_cfg=dict(type='ReLU'),
                 norm_eval=False,
                 init_cfg=[
                     dict(type='Kaiming', layer=['Conv2d']),
                     dict(
                         type='Constant',
                         val=1,
                         layer=['_BatchNorm', 'GroupNorm'])
                 ]):
        super().__init__(init_cfg)  # BaseModule deep-copies init_cfg
        if (isinstance(widen_factor, bool)
                or not isinstance(widen_factor, Real) or widen_factor <= 0):
            raise ValueError(
                f'widen_factor must be a number > 0, got {widen_factor!r}')
        self.widen_factor = widen_factor
        self.out_indices = self._check_out_indices(out_indices)
        if (isinstance(frozen_stages, bool)
                or not isinstance(frozen_stages, int)
                or frozen_stages not in range(-1, self.num_stages + 1)):
            raise ValueError(
                'frozen_stages must be an int in range(-1, '
                f'{self.num_stages + 1}), got {frozen_stages!r}')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval

        layer_cfg = dict(
            conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        in_channels = make_divisible(self.stem_channels * widen_factor, 8)
        self.stage_names = list(self.stage_settings)
        for name, blocks in self.stage_settings.items():
            layers = []
            if name == 'stem':
                layers.append(
                    ConvModule(
                        3, in_channels, 3, stride=2, padding=1, **layer_cfg))
            for channels, stride in blocks:
                out_channels = make_divisible(channels * widen_factor, 8)
                layers.append(
                    DepthwiseSeparableConvModule(
                        in_channels,
                        out_channels,
                        3,
                        stride=stride,
                        padding=1,
                        **layer_cfg))
                in_channels = out_channels
            self.add_module(name, nn.Sequential(*layers))
        self.out_channels = in_channels  # of layer4
        self._freeze_stages()

    def _check_out_indices(self, out_indices):
        if isinstance(out_indices, int) and not isinstance(out_indices, bool):
            out_indices = (out_indices, )
        try:
            indices = list(out_indices)
        except TypeError:
            indices = None
        if (not indices or any(
                isinstance(i, bool) or not isinstance(i, int)
                or i not in range(-self.num_stages, self.num_stages)
                for i in indices)):
            raise ValueError(
                'out_indices must be a non-empty sequence of ints in '
                f'range(-{self.num_stages}, {self.num_stages}) (indices into '
                f'(layer1, layer2, layer3, layer4)), got {out_indices!r}')
        indices = [i % self.num_stages for i in indices]
        if len(set(indices)) != len(indices):
            raise ValueError(
                f'out_indices has repeated stages: {out_indices!r}')
        return tuple(sorted(indices))

    def forward(self, x):
        x = self.stem(x)
        outs = []
        for i in range(self.num_stages):
            x = getattr(self, f'layer{i + 1}')(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def _freeze_stages(self):
        for name in self.stage_names[:self.frozen_stages + 1]:
            stage = getattr(self, name)
            stage.eval()
            for param in stage.parameters():
                param.requires_grad = False

    def train(self, mode=True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self
