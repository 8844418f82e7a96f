"""A linear head on DINO's ViT read-out, for linear probing."""
from typing import Tuple

import torch
from mmpretrain.models.heads import LinearClsHead

from cls_kd.registry import MODELS

__all__ = ['DINOLinearClsHead']


@MODELS.register_module()
class DINOLinearClsHead(LinearClsHead):
    """Linear classifier on the features DINO's ``eval_linear.py`` reads.

    Reference: Caron et al., "Emerging properties in self-supervised vision
    transformers", ICCV 2021.

    The input is the backbone's tuple of token sequences, one per block in
    its ``out_indices`` (``out_type='raw'``, each through the final norm:
    :class:`~cls_kd.models.backbones.DINOVisionTransformer`). The feature is
    the concatenation of their class tokens (DINO's ``n_last_blocks`` =
    the tuple's length), followed, with ``avgpool_patchtokens``, by the mean
    of the last block's patch tokens, interleaved with the class token as
    DINO lays them out (which DINO only supports for one block). No
    normalisation layer: a bare ``nn.Linear``, initialised N(0, 0.01) with
    zero bias by ``LinearClsHead``'s default ``init_cfg``, as DINO's.

    Args:
        avgpool_patchtokens (bool): Append the average-pooled patch tokens
            of the last block. Defaults to False (DINO's ViT-S setting).
        **kwargs: Arguments of ``LinearClsHead``; ``in_channels`` is the
            width of the concatenated feature.
    """

    def __init__(self, avgpool_patchtokens: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.avgpool_patchtokens = avgpool_patchtokens

    def pre_logits(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        if any(f.dim() != 3 for f in feats):
            raise ValueError(
                'DINOLinearClsHead expects token sequences (B, 1 + N, C) '
                "from the backbone (out_type='raw'), got shapes "
                f'{[tuple(f.shape) for f in feats]}.')
        out = torch.cat([f[:, 0] for f in feats], dim=-1)  # B, n * C
        if self.avgpool_patchtokens:
            if len(feats) != 1:
                raise ValueError(
                    'avgpool_patchtokens=True needs one block (DINO '
                    f'concatenates it with n_last_blocks=1), got '
                    f'{len(feats)}.')
            avg = feats[-1][:, 1:].mean(dim=1)  # B, C
            out = torch.stack((out, avg), dim=-1).flatten(1)  # B, 2C
        if out.shape[-1] != self.in_channels:
            raise ValueError(
                f'DINOLinearClsHead: the read-out has {out.shape[-1]} '
                f'channels ({len(feats)} blocks'
                f'{" + patch average" if self.avgpool_patchtokens else ""})'
                f', in_channels is {self.in_channels}.')
        return out
