"""mmpretrain's Vision Transformer built and read out as DINO's."""
import torch
from mmpretrain.models.backbones import VisionTransformer
from mmpretrain.models.utils import resize_pos_embed

from cls_kd.registry import MODELS

from .vit_init import TimmInitMixin

__all__ = ['DINOVisionTransformer']


@MODELS.register_module()
class DINOVisionTransformer(TimmInitMixin, VisionTransformer):
    """``VisionTransformer`` with DINO's initialisation and read-out.

    Reference: Caron et al., "Emerging properties in self-supervised vision
    transformers", ICCV 2021 (facebookresearch/dino ``vision_transformer.py``,
    whose ViT AttnDistill's students copy).

    - Initialisation, unless the weights come from a ``Pretrained``
      ``init_cfg``: DINO's, which is timm's (``init_style='timm'``, see
      :func:`~cls_kd.models.backbones.vit_init.timm_vit_init_`): every
      ``nn.Linear`` weight trunc-normal (std 0.02) with zero bias, every
      ``nn.LayerNorm`` weight 1 and bias 0, the class token and the position
      embedding trunc-normal (std 0.02); the patch embedding's convolution
      keeps PyTorch's default initialisation, which DINO does not touch.
      (mmpretrain's own init uses Xavier for the MLPs and PyTorch's default
      for the attention projections and leaves the class token at zero.)
    - Read-out: the final norm (``ln1``) is applied to the output of every
      block in ``out_indices``, as DINO's ``get_intermediate_layers`` does
      for its linear probe, not only to the last block's. The last block's
      output is the same as ``VisionTransformer``'s.

    Args:
        init_style (str): ``'timm'`` (DINO's, the default) or
            ``'mmpretrain'``.
        **kwargs: Arguments of ``VisionTransformer``; ``final_norm`` and
            ``with_cls_token`` must stay True (their defaults).
    """

    DEFAULT_INIT = 'timm'

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if not (self.final_norm and self.cls_token is not None):
            raise ValueError('DINOVisionTransformer needs final_norm=True and '
                             'with_cls_token=True (DINO\'s ViT has both).')

    def forward(self, x: torch.Tensor) -> tuple:
        B = x.shape[0]
        x, patch_resolution = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(B, -1, -1), x), dim=1)
        x = x + resize_pos_embed(
            self.pos_embed,
            self.patch_resolution,
            patch_resolution,
            mode=self.interpolate_mode,
            num_extra_tokens=self.num_extra_tokens)
        x = self.pre_norm(self.drop_after_pos(x))
        outs = []
        for i, layer in enumerate(self.layers):
            x = layer(x)  # B, 1 + N, C
            if i in self.out_indices:
                outs.append(self._format_output(self.ln1(x),
                                                patch_resolution))
        return tuple(outs)
