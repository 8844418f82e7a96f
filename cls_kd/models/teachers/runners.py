"""Per-family runners of part of a frozen teacher (``TEACHER_RUNNERS``):
ViT/DeiT/BEiT/EVA-02 blocks, a Swin stage, or a plain chain of modules.
:class:`~cls_kd.models.teachers.TeacherPart` runs them with autograd.
"""
import copy
import math
from types import SimpleNamespace
from typing import Optional, Sequence, Tuple, Union

import mmpretrain.models.backbones as mmb
import torch
import torch.nn as nn

from cls_kd.registry import TEACHER_RUNNERS

from ..taps import get_submodule

__all__ = [
    'TeacherRunner', 'SequentialRunner', 'ViTBlocksRunner', 'SwinStageRunner'
]

HW = Tuple[int, int]


def _resolve(model: nn.Module, path: str, owner: str, expected: tuple,
             hint: str) -> nn.Module:
    module = get_submodule(model, path, owner)
    if not isinstance(module, expected):
        raise ValueError(
            f'{owner}: {path!r} of the teacher is a {type(module).__name__}; '
            f'expected one of {[c.__name__ for c in expected]} (or a '
            f'subclass). {hint}')
    return module


def _index(i: int, n: int, what: str, owner: str) -> int:
    if not -n <= i < n:
        raise ValueError(f'{owner}: {what} {i} is out of range: the backbone '
                         f'has {n} {what}s (0..{n - 1}, or -{n}..-1).')
    return i % n


def _square_grid(num_tokens: int, owner: str) -> HW:
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        raise ValueError(f'{owner}: cannot infer the grid of {num_tokens} '
                         f'tokens as a square; pass hw_shape=(H, W).')
    return side, side


class TeacherRunner:
    """Base of the runners: ``bind(model)`` resolves the teacher's modules
    (errors name what is missing), ``runner(x, **kwargs)`` runs them.

    A runner holds references to teacher modules, never copies: deepcopy
    (e.g. of an EMA model) returns a shallow copy sharing them.
    """

    def __deepcopy__(self, memo):
        return copy.copy(self)

    def __repr__(self) -> str:
        args = ', '.join(f'{k}={v!r}' for k, v in vars(self).items()
                         if not k.startswith('_'))
        return f'{type(self).__name__}({args})'

    def bind(self, model: nn.Module) -> None:
        raise NotImplementedError

    def _parts(self) -> SimpleNamespace:
        if self.__dict__.get('_bound') is None:
            raise RuntimeError(f'{type(self).__name__} is not bound to a '
                               f'teacher: call bind(model) first.')
        return self._bound


@TEACHER_RUNNERS.register_module()
class SequentialRunner(TeacherRunner):
    """Chains ``x = module(x)`` over teacher modules (a CNN stage, timm
    blocks, ...).

    Args:
        paths (str | Sequence[str]): Dotted module paths in the teacher, run
            in order, e.g. ``['backbone.layer4', 'neck']``.
    """

    def __init__(self, paths: Union[str, Sequence[str]]):
        self.paths = (paths, ) if isinstance(paths, str) else tuple(paths)
        if not self.paths:
            raise ValueError('SequentialRunner needs at least one path.')
        self._bound = None

    def bind(self, model: nn.Module) -> None:
        self._bound = tuple(
            get_submodule(model, p, 'SequentialRunner') for p in self.paths)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for module in self._parts():
            x = module(x)
        return x


# Block class -> the argument its forward takes after the tokens. Subclasses
# before their bases (BEiT's block subclasses TransformerEncoderLayer).
_VIT_BLOCKS = (
    (mmb.vit_eva02.EVA02EndcoderLayer, 'patch_resolution'),
    (mmb.beit.BEiTTransformerEncoderLayer, 'rel_pos_bias'),
    (mmb.vision_transformer.TransformerEncoderLayer, None),
    (mmb.deit3.DeiT3TransformerEncoderLayer, None),
)


def _vit_block_arg(block: nn.Module, owner: str) -> Optional[str]:
    for cls, arg in _VIT_BLOCKS:
        if isinstance(block, cls):
            return arg
    raise ValueError(
        f'{owner}: cannot run a {type(block).__name__} block; known blocks: '
        f'{[c.__name__ for c, _ in _VIT_BLOCKS]}. SequentialRunner runs '
        f'blocks that take only the tokens.')


@TEACHER_RUNNERS.register_module()
class ViTBlocksRunner(TeacherRunner):
    """Runs blocks ``layers[start:end]`` of an mmpretrain ViT and its final
    norm, as the backbone's forward does.

    Covers ``VisionTransformer`` and subclasses (DeiT, ``DeiT3``, cls_kd's
    ``FixedDeiT3``, ``ViTEVA02`` with its rotary embedding, ...) and
    ``BEiTViT`` (BEiT, EVA), whose blocks get the shared relative position
    bias when the backbone has one (``use_shared_rel_pos_bias``).
    Input: what block ``start`` receives, tokens (B, N, C) with the prefix
    (class / distillation) tokens first. Output: tokens (B, N, C).

    Args:
        start (int): First block; negative counts from the end (ScaleKD's
            ViT teacher part: ``start=-2``).
        end (int, optional): One past the last block, as in a slice;
            ``None`` runs to the last block. Defaults to None.
        final_norm (bool): Apply the backbone's final norm (``ln1``) as its
            forward does: after the last block only, if the backbone has one
            (``final_norm=True``; BEiT's default is False). Output pooling
            (``avg_featmap``'s ``ln2``) is never applied. Defaults to True.
        backbone (str): Path of the backbone in the teacher ('' when the
            teacher is the backbone). Defaults to ``'backbone'``.
        add_prefix (bool): The input is patch tokens only (B, H*W, C), e.g.
            a projector's output: prepend the backbone's own frozen class
            (and distillation) tokens as its forward builds them before
            block 0 (with their position embedding when the backbone's
            covers them, and its ``pre_norm``), and return the patch tokens
            only. BEiT's relative position bias needs them. From a block
            ``start > 0`` these are the tokens' initial values, not what
            blocks ``0..start-1`` would make of them: the input tokens did
            not come through those blocks either (ScaleKD's TPP feeds
            projected student features). Exact from ``start=0``. Defaults
            to False.
    """

    def __init__(self, start: int, end: Optional[int] = None,
                 final_norm: bool = True, backbone: str = 'backbone',
                 add_prefix: bool = False):
        self.start, self.end = start, end
        self.final_norm = final_norm
        self.backbone = backbone
        self.add_prefix = add_prefix
        self._bound = None

    def bind(self, model: nn.Module) -> None:
        owner = 'ViTBlocksRunner'
        backbone = _resolve(
            model, self.backbone, owner, (mmb.VisionTransformer, mmb.BEiTViT),
            'SwinStageRunner runs Swin, SequentialRunner other models.')
        n = len(backbone.layers)
        start = _index(self.start, n, 'block', owner)
        end = self.end if self.end is not None else n
        end = end + n if end < 0 else end
        if not start < end <= n:
            raise ValueError(f'{owner}: start={self.start}, end={self.end} '
                             f'select no blocks of a backbone with {n}.')
        blocks = tuple(backbone.layers[start:end])
        norm = None
        if self.final_norm:
            if end != n:
                raise ValueError(
                    f'{owner}: final_norm=True, but the backbone applies its '
                    f'final norm only after its last block ({n - 1}), not '
                    f'after block {end - 1}; set final_norm=False.')
            if getattr(backbone, 'final_norm', False):
                norm = backbone.ln1
        self._bound = SimpleNamespace(
            blocks=blocks, norm=norm,
            extra_arg=_vit_block_arg(blocks[0], owner),
            rel_pos_bias=getattr(backbone, 'rel_pos_bias', None),
            num_prefix_tokens=backbone.num_extra_tokens,
            backbone=backbone if self.add_prefix else None)
        if self.add_prefix and backbone.num_extra_tokens == 0:
            raise ValueError(f'{owner}: add_prefix=True, but the backbone '
                             f'has no class or distillation token.')

    @staticmethod
    def _prefix(backbone: nn.Module, like: torch.Tensor) -> torch.Tensor:
        """The backbone's extra tokens as its forward adds them (with
        their position embedding if its ``pos_embed`` covers them)."""
        n = backbone.num_extra_tokens
        tokens = [backbone.cls_token]
        if n > 1:
            tokens.append(backbone.dist_token)
        prefix = torch.cat(tokens, dim=1)[:, :n]
        pos = getattr(backbone, 'pos_embed', None)
        patches = math.prod(backbone.patch_resolution)
        if pos is not None and pos.shape[1] == patches + n:
            prefix = prefix + pos[:, :n]
        pre_norm = getattr(backbone, 'pre_norm', None)
        if pre_norm is not None:  # nn.Identity unless pre_norm=True (CLIP)
            prefix = pre_norm(prefix)
        return prefix.to(like.dtype).expand(like.shape[0], -1, -1)

    def __call__(self, x: torch.Tensor,
                 hw_shape: Optional[HW] = None) -> torch.Tensor:
        """x: (B, N, C) tokens. hw_shape: the patch grid (H, W), used only
        by blocks that take it (EVA-02); a square grid when omitted."""
        parts = self._parts()
        if parts.backbone is not None:
            x = torch.cat([self._prefix(parts.backbone, x), x], dim=1)
        extra = ()
        if parts.extra_arg == 'rel_pos_bias':
            # As BEiTViT.forward: one bias from the shared module, or None.
            bias = parts.rel_pos_bias
            extra = (bias() if bias is not None else None, )
        elif parts.extra_arg == 'patch_resolution':
            extra = (hw_shape or _square_grid(
                x.shape[1] - parts.num_prefix_tokens, 'ViTBlocksRunner'), )
        for block in parts.blocks:
            x = block(x, *extra)
        if parts.norm is not None:
            x = parts.norm(x)
        if parts.backbone is not None:
            x = x[:, parts.num_prefix_tokens:]
        return x


@TEACHER_RUNNERS.register_module()
class SwinStageRunner(TeacherRunner):
    """Runs one stage of an mmpretrain Swin Transformer (V1 or V2): the
    patch merging that precedes it, its blocks, and its output norm.

    ScaleKD's Swin teacher part is ``SwinStageRunner(stage=3)`` (or -1):
    the stage-3 patch merging, the stage-4 blocks and the final norm. In
    ``SwinTransformer`` the merging before stage ``s`` is
    ``stages[s - 1].downsample`` (end of the previous stage); in
    ``SwinTransformerV2`` it is ``stages[s].downsample`` (start of the
    stage). The norm ``norm{s}`` exists for ``s`` in ``out_indices`` only.

    Input: what the merging receives (the previous stage's blocks' output),
    or with ``with_downsample=False`` what the stage's first block receives:
    tokens (B, H*W, C) in row-major order with ``hw_shape=(H, W)`` (a square
    grid when omitted), or a map (B, C, H, W). Output: tokens (B, H'*W', C')
    in row-major order, H' = ceil(H / 2), W' = ceil(W / 2) after merging.

    Args:
        stage (int): Index in ``backbone.stages`` (negative from the end).
        with_downsample (bool): Run the patch merging that precedes the
            stage. Defaults to True.
        final_norm (bool): Apply ``norm{stage}``, as the backbone does to
            the stage's output. Defaults to True.
        backbone (str): Path of the backbone in the teacher ('' when the
            teacher is the backbone). Defaults to ``'backbone'``.
    """

    def __init__(self, stage: int, with_downsample: bool = True,
                 final_norm: bool = True, backbone: str = 'backbone'):
        self.stage = stage
        self.with_downsample = with_downsample
        self.final_norm = final_norm
        self.backbone = backbone
        self._bound = None

    def bind(self, model: nn.Module) -> None:
        owner = 'SwinStageRunner'
        backbone = _resolve(
            model, self.backbone, owner,
            (mmb.SwinTransformer, mmb.SwinTransformerV2),
            'ViTBlocksRunner runs ViTs, SequentialRunner other models.')
        s = _index(self.stage, len(backbone.stages), 'stage', owner)
        stage = backbone.stages[s]
        v2 = isinstance(backbone, mmb.SwinTransformerV2)
        merge = None
        if self.with_downsample:
            merge = stage.downsample if v2 else (
                backbone.stages[s - 1].downsample if s > 0 else None)
            if merge is None:
                raise ValueError(f'{owner}: no patch merging precedes stage '
                                 f'{s}; set with_downsample=False.')
        norm = None
        if self.final_norm:
            norm = getattr(backbone, f'norm{s}', None)
            if norm is None:
                raise ValueError(
                    f'{owner}: the backbone has no norm{s} (out_indices='
                    f'{tuple(backbone.out_indices)}): it never normalises '
                    f'stage {s}; set final_norm=False.')
            if (not v2 and backbone.out_after_downsample
                    and stage.downsample is not None):
                raise ValueError(
                    f'{owner}: with out_after_downsample=True, norm{s} '
                    f'normalises stage {s} after its own patch merging, '
                    f'which this runner does not run; set final_norm=False.')
        in_channels = (
            merge.in_channels if merge is not None else
            stage.out_channels if v2 else stage.embed_dims)
        self._bound = SimpleNamespace(
            merge=merge, blocks=tuple(stage.blocks), norm=norm,
            in_channels=in_channels)

    def __call__(self, x: torch.Tensor,
                 hw_shape: Optional[HW] = None) -> torch.Tensor:
        """x: (B, H*W, C) tokens or (B, C, H, W) map; hw_shape: (H, W) of
        the tokens. Returns (B, H'*W', C') tokens (see the class doc)."""
        parts = self._parts()
        if x.dim() == 4:
            hw_shape = tuple(x.shape[2:])
            x = x.flatten(2).transpose(1, 2)  # B, H*W, C
        elif hw_shape is None:
            hw_shape = _square_grid(x.shape[1], 'SwinStageRunner')
        if x.shape[-1] != parts.in_channels:
            raise ValueError(f'SwinStageRunner: the stage takes '
                             f'{parts.in_channels} channels, got a tensor of '
                             f'shape {tuple(x.shape)}.')
        hw_shape = tuple(hw_shape)
        if parts.merge is not None:
            x, hw_shape = parts.merge(x, hw_shape)
        for block in parts.blocks:
            x = block(x, hw_shape)
        if parts.norm is not None:
            x = parts.norm(x)
        return x
