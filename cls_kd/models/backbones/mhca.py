"""Multi-head convolutional attention (MHCA) for the first blocks of a ViT.

Reference: Chen et al., `DearKD: Data-Efficient Early Knowledge Distillation
for Vision Transformers <https://arxiv.org/abs/2204.12997>`_, CVPR 2022,
which takes MHCA from ConViT's gated positional self-attention (d'Ascoli et
al., ICML 2021). Each head mixes content attention with attention over
relative patch positions; at local initialisation head ``h`` attends to the
patch at its own offset of a ``k x k`` kernel, so that the block starts as a
convolution and can learn to become global.

:class:`MultiheadConvAttention` is mmpretrain's ``MultiheadAttention`` plus
``pos_proj`` and ``gating``; :class:`MHCAVisionTransformer` and
:class:`MHCADistilledVisionTransformer` are mmpretrain's ViT / DeiT whose
first ``mhca_layers`` blocks use it. Every other state dict key is
mmpretrain's, so plain ViT / DeiT checkpoints load with ``strict=False``.
"""
import math
from typing import List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.models.backbones import (
    DistilledVisionTransformer,
    VisionTransformer,
)
from mmpretrain.models.utils import MultiheadAttention

from cls_kd.registry import MODELS

from .vit_init import TimmInitMixin

__all__ = [
    'MultiheadConvAttention', 'MHCAVisionTransformer',
    'MHCADistilledVisionTransformer', 'grid_offsets', 'kernel_offsets'
]


def grid_offsets(height: int, width: int, device=None,
                 dtype=None) -> torch.Tensor:
    """Relative offsets between the patches of a ``height x width`` grid.

    Patches are numbered row-major, as ViT tokens are.

    Returns:
        Tensor: ``(P, P, 3)`` with ``P = height * width``; entry
        ``[query, key]`` is ``(dx, dy, dx**2 + dy**2)`` where
        ``(dx, dy) = key - query`` in patch units (x along a row).
    """
    ys, xs = torch.meshgrid(
        torch.arange(height, device=device),
        torch.arange(width, device=device),
        indexing='ij')
    xs, ys = xs.flatten(), ys.flatten()
    dx = xs[None, :] - xs[:, None]
    dy = ys[None, :] - ys[:, None]
    return torch.stack([dx, dy, dx**2 + dy**2], dim=-1).to(dtype)


def kernel_offsets(num_heads: int) -> List[Tuple[int, int]]:
    """The ``(dx, dy)`` offset that each head covers at local init.

    A square number of heads fills a ``k x k`` kernel, ``k =
    sqrt(num_heads)``, row-major: head ``i * k + j`` takes ``(dx, dy) = (j -
    c, i - c)`` with ``c = (k - 1) // 2``, the weight ``[:, :, i, j]`` of a
    ``k x k`` convolution padded like PyTorch's ``padding='same'``: 9 heads
    take ``{-1, 0, 1}^2``, 4 heads (even ``k``) take ``{0, 1}^2``.

    Any other count (DeiT-Ti's 3, DeiT-S's 6, DeiT-B's 12 heads) takes the
    ``num_heads`` most central offsets of the smallest kernel holding them,
    ``k = ceil(sqrt(num_heads))``, nearest to the centre first (ties in
    row-major order): 3 heads take (0, 0), (1, 0), (0, 1) of ``{0, 1}^2``; 6
    heads the centre and its four neighbours and (-1, -1) of
    ``{-1, 0, 1}^2``. The heads then start as a partial ``k x k`` kernel.

    Args:
        num_heads (int): The number of heads.
    """
    if num_heads < 1:
        raise ValueError(f'MultiheadConvAttention needs num_heads >= 1, got '
                         f'{num_heads}.')
    k = math.isqrt(num_heads)
    if k * k != num_heads:
        k += 1
    c = (k - 1) // 2
    offsets = [(j - c, i - c) for i in range(k) for j in range(k)]
    if len(offsets) == num_heads:
        return offsets
    order = sorted(range(len(offsets)),
                   key=lambda n: (offsets[n][0]**2 + offsets[n][1]**2, n))
    return [offsets[n] for n in order[:num_heads]]


@MODELS.register_module()
class MultiheadConvAttention(MultiheadAttention):
    """Multi-head convolutional attention (MHCA) of DearKD.

    Reference: DearKD (CVPR 2022), after ConViT's gated positional
    self-attention. Head ``h`` attends with

        ``(1 - g_h) * softmax(q k^T * scale) + g_h * softmax(pos_proj(r))``

    where ``g_h = sigmoid(gating[h])`` and ``r = (dx, dy, dx^2 + dy^2)`` is
    the offset from the query patch to the key patch (:func:`grid_offsets`).
    Prefix (class / distillation) query rows use content attention only;
    patch query rows put no positional weight on prefix keys. Attention
    dropout applies to the mixed attention. The patch grid is taken to be
    square, its side inferred from the token count.

    At local init, ``pos_proj`` makes head ``h``'s position logit
    ``-locality_strength * |delta - Delta_h|^2`` (plus a constant), with
    ``Delta_h`` from :func:`kernel_offsets`: for large strength the head
    looks at the one patch at ``Delta_h``, or the nearest one inside the grid
    (replicate padding). ``init_weights`` re-applies it after the parent's
    ``init_cfg`` (which may re-initialise every ``nn.Linear``).

    Args:
        embed_dims (int): The embedding dimension.
        num_heads (int): Parallel attention heads.
        num_prefix_tokens (int): Tokens before the patch tokens (class and
            distillation tokens); the MHCA backbones set it. Defaults to 0.
        local_init (bool): Initialise ``pos_proj`` as a convolution kernel
            (a full one for a square ``num_heads``, else a partial one, see
            :func:`kernel_offsets`). Defaults to True.
        locality_strength (float): ``alpha``, how sharply each head focuses
            on its offset at local init. Defaults to 1.0.
        gating_init (float): Initial ``gating`` (before the sigmoid) of
            every head; 1.0 starts at 73% positional. Defaults to 1.0.
        **kwargs: The other arguments of mmpretrain's ``MultiheadAttention``
            (``attn_drop``, ``proj_drop``, ``qkv_bias``, ...).
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 num_prefix_tokens: int = 0,
                 local_init: bool = True,
                 locality_strength: float = 1.0,
                 gating_init: float = 1.0,
                 **kwargs):
        super().__init__(embed_dims, num_heads, **kwargs)
        if local_init:
            kernel_offsets(num_heads)  # fail at build time, not in init
        self.num_prefix_tokens = num_prefix_tokens
        self.local_init = local_init
        self.locality_strength = locality_strength
        # mmpretrain ignores the value of ``qk_scale``; so does this module.
        self.scale = self.head_dims**-0.5
        self.pos_proj = nn.Linear(3, num_heads)
        self.gating = nn.Parameter(torch.full((num_heads, ), gating_init))
        if local_init:
            self.init_local()

    @torch.no_grad()
    def init_local(self):
        """Set ``pos_proj`` so that head ``h`` looks at offset ``Delta_h``:
        weights ``(2 a Delta_x, 2 a Delta_y, -a)``, bias 0, ``a`` the
        locality strength."""
        alpha = self.locality_strength
        self.pos_proj.weight.copy_(
            torch.tensor([[2 * alpha * dx, 2 * alpha * dy, -alpha]
                          for dx, dy in kernel_offsets(self.num_heads)]))
        self.pos_proj.bias.zero_()

    def init_weights(self):
        super().init_weights()
        if self.local_init:
            self.init_local()

    def attention(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """The mixed attention, ``(B, H, N, N)``, from ``q`` and ``k`` of
        shape ``(B, H, N, head_dims)``; rows sum to 1, no dropout."""
        N, n = q.shape[2], self.num_prefix_tokens
        side = math.isqrt(max(N - n, 0))
        if side * side != N - n or side == 0:
            raise ValueError(
                f'MultiheadConvAttention needs the patch tokens to form a '
                f'square grid, but got {N} tokens of which '
                f'num_prefix_tokens={n} are prefix tokens, leaving {N - n} '
                f'patch tokens. Feed square images (a whole number of '
                f'patches per side) or set num_prefix_tokens to the number '
                f'of class/distillation tokens.')
        content = (q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1)
        offsets = grid_offsets(
            side, side, device=q.device, dtype=self.pos_proj.weight.dtype)
        position = self.pos_proj(offsets).permute(2, 0, 1).softmax(dim=-1)
        # Zero positional attention for prefix queries and prefix keys.
        position = F.pad(position, (n, 0, n, 0))  # H, N, N
        is_patch_row = (torch.arange(N, device=q.device) >= n).unsqueeze(1)
        gate = torch.sigmoid(self.gating).view(-1, 1, 1) * is_patch_row
        return (1 - gate) * content + gate * position

    def _qkv(self, x: torch.Tensor):
        B, N, _ = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads,
                                  self.head_dims).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]  # each B, H, N, head_dims

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """The attention of input ``x`` ``(B, N, input_dims)``, as
        ``(B, H, N, N)``: for inspection and tests."""
        q, k, _ = self._qkv(x)
        return self.attention(q, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, input_dims)`` -> ``(B, N, embed_dims)``."""
        B, N, _ = x.shape
        q, k, v = self._qkv(x)
        attn = F.dropout(
            self.attention(q, k), p=self.attn_drop, training=self.training)
        out = (attn @ v).transpose(1, 2).reshape(B, N, self.embed_dims)
        out = self.out_drop(self.gamma1(self.proj_drop(self.proj(out))))
        if self.v_shortcut:
            out = v.squeeze(1) + out
        return out


class MHCABackboneMixin:
    """Replaces the attention of a ViT's first ``mhca_layers`` blocks by
    :class:`MultiheadConvAttention`, after the ViT is built.

    Each replacement reads ``embed_dims``, ``num_heads``, ``qkv_bias``,
    ``proj_bias`` and ``proj_drop`` off the attention it replaces and takes
    over its stochastic depth and layer scale modules (so ``gamma1`` keeps
    its key); ``num_prefix_tokens`` is the backbone's ``num_extra_tokens``.

    Args:
        mhca_layers (int): How many first blocks use MHCA; 0 gives the plain
            backbone. Defaults to 4.
        mhca_cfg (dict): Options of :class:`MultiheadConvAttention`:
            ``locality_strength`` (1.0), ``gating_init`` (1.0),
            ``local_init`` (True) and ``attn_drop`` (0.1). DearKD drops
            attention in MHCA so that it does not collapse onto local
            patterns but gives no rate (nor code); 0.1 is our choice.
            Defaults to ``dict()``.
    """

    MHCA_DEFAULTS = dict(
        locality_strength=1.0, gating_init=1.0, local_init=True, attn_drop=0.1)

    def __init__(self, *args, mhca_layers=4, mhca_cfg=dict(), **kwargs):
        super().__init__(*args, **kwargs)
        unknown = set(mhca_cfg) - set(self.MHCA_DEFAULTS)
        if unknown:
            raise TypeError(
                f'Unknown mhca_cfg keys {sorted(unknown)}; it takes '
                f'{sorted(self.MHCA_DEFAULTS)}. The other attention '
                f'arguments come from the replaced attention.')
        if not 0 <= mhca_layers <= self.num_layers:
            raise ValueError(
                f'mhca_layers={mhca_layers}, but the backbone has '
                f'{self.num_layers} layers: choose 0 to {self.num_layers}.')
        self.mhca_layers = mhca_layers
        cfg = {**self.MHCA_DEFAULTS, **mhca_cfg}
        for i in range(mhca_layers):
            attn = self.layers[i].attn
            if type(attn) is not MultiheadAttention:
                raise TypeError(
                    f'layers.{i}.attn is a {type(attn).__name__}; MHCA '
                    f'replaces only mmpretrain\'s MultiheadAttention.')
            mhca = MultiheadConvAttention(
                embed_dims=attn.embed_dims,
                num_heads=attn.num_heads,
                input_dims=attn.input_dims,
                proj_drop=attn.proj_drop.p,
                qkv_bias=attn.qkv.bias is not None,
                proj_bias=attn.proj.bias is not None,
                v_shortcut=attn.v_shortcut,
                num_prefix_tokens=self.num_extra_tokens,
                **cfg)
            mhca.out_drop, mhca.gamma1 = attn.out_drop, attn.gamma1
            self.layers[i].attn = mhca
        if self.frozen_stages > 0:  # freeze the new modules too
            self._freeze_stages()


@MODELS.register_module()
class MHCAVisionTransformer(MHCABackboneMixin, TimmInitMixin,
                            VisionTransformer):
    """mmpretrain's ``VisionTransformer`` with MHCA in its first blocks
    (DearKD, CVPR 2022).

    Takes ``VisionTransformer``'s arguments plus ``mhca_layers`` and
    ``mhca_cfg`` (see :class:`MHCABackboneMixin`) and ``init_style``
    (``'mmpretrain'``, the default, or ``'timm'``: DeiT's code's
    initialisation, MHCA's local init kept; see
    :class:`~cls_kd.models.backbones.vit_init.TimmInitMixin`). Its state
    dict is mmpretrain's plus ``layers.{i}.attn.pos_proj.weight``,
    ``layers.{i}.attn.pos_proj.bias`` and ``layers.{i}.attn.gating`` for
    ``i < mhca_layers``. mmpretrain's ``deit-*`` archs have 3, 6 or 12
    heads, which start as the most central offsets of a 2x2, 3x3 or 4x4
    kernel (:func:`kernel_offsets`).
    """


@MODELS.register_module()
class MHCADistilledVisionTransformer(MHCABackboneMixin, TimmInitMixin,
                                     DistilledVisionTransformer):
    """mmpretrain's ``DistilledVisionTransformer`` (DeiT with a
    distillation token) with MHCA in its first blocks, as DearKD trains it.

    Same arguments and state dict keys as
    :class:`MHCAVisionTransformer`; both prefix tokens (class and
    distillation) get content attention only.
    """
