"""timm's Vision Transformer initialisation for mmpretrain's ViTs.

DeiT's and DINO's code build their ViTs with timm's rule (timm 0.3.2
``vision_transformer.py``: ``_init_weights`` and the token/position
``trunc_normal_`` calls); mmpretrain's ``VisionTransformer`` initialises
differently (Xavier-uniform MLPs, PyTorch-default attention projections, a
class token at zero). The paper configs of methods whose official students
are timm/DINO ViTs select timm's rule with ``init_style='timm'``.
"""
import torch.nn as nn
from mmengine.model.weight_init import trunc_normal_
from mmpretrain.models.backbones import DistilledVisionTransformer

from cls_kd.registry import MODELS

__all__ = [
    'timm_vit_init_', 'TimmInitMixin', 'TimmInitDistilledVisionTransformer'
]

INIT_STYLES = ('mmpretrain', 'timm')


def timm_vit_init_(backbone: nn.Module) -> None:
    """Initialise ``backbone`` in place as timm's ViT.

    Every ``nn.Linear`` weight trunc-normal (std 0.02) with zero bias, every
    ``nn.LayerNorm`` weight 1 and bias 0, the class token, distillation token
    and position embedding trunc-normal (std 0.02); convolutions (the patch
    embedding) at PyTorch's default, which timm leaves them at. MHCA
    attention keeps its local initialisation (its positional projection is
    a Linear layer that this would otherwise overwrite).
    """
    for module in backbone.modules():
        if isinstance(module, nn.Linear):
            trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Conv2d):
            module.reset_parameters()
    for name in ('cls_token', 'dist_token', 'pos_embed'):
        param = getattr(backbone, name, None)
        if isinstance(param, nn.Parameter):
            trunc_normal_(param, std=0.02)
    for module in backbone.modules():
        if getattr(module, 'local_init', False) and hasattr(
                module, 'init_local'):
            module.init_local()


class TimmInitMixin:
    """Adds ``init_style`` to an mmpretrain ViT backbone.

    Args:
        init_style (str): ``'mmpretrain'`` keeps the backbone's own
            initialisation; ``'timm'`` re-initialises it with
            :func:`timm_vit_init_` after it (not when the weights come from
            a ``Pretrained`` ``init_cfg``). Defaults to ``DEFAULT_INIT``.
    """

    DEFAULT_INIT = 'mmpretrain'

    def __init__(self, *args, init_style=None, **kwargs):
        init_style = init_style or self.DEFAULT_INIT
        if init_style not in INIT_STYLES:
            raise ValueError(f'init_style={init_style!r}: choose one of '
                             f'{list(INIT_STYLES)}.')
        super().__init__(*args, **kwargs)
        self.init_style = init_style

    def init_weights(self):
        super().init_weights()
        pretrained = (isinstance(self.init_cfg, dict)
                      and self.init_cfg.get('type') == 'Pretrained')
        if self.init_style == 'timm' and not pretrained:
            timm_vit_init_(self)


@MODELS.register_module()
class TimmInitDistilledVisionTransformer(TimmInitMixin,
                                         DistilledVisionTransformer):
    """mmpretrain's ``DistilledVisionTransformer`` initialised as DeiT's
    code (timm 0.3.2) initialises its distilled DeiT: ``init_style='timm'``
    by default (see :func:`~cls_kd.models.backbones.vit_init.timm_vit_init_`;
    the distillation token too). Same arguments and state dict as
    ``DistilledVisionTransformer``.
    """

    DEFAULT_INIT = 'timm'
