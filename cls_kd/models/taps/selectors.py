"""Selectors: turn what a tapped module produced into what a loss wants.

A selector is ``fn(value, ctx, **options) -> Tensor`` where ``value`` is the
module's output (or its first input, for taps with ``capture='input'``) and
``ctx`` is the :class:`SelectorContext` of the tap. Selectors live in the
mmengine registry ``TAP_SELECTORS``; register new ones with
``@TAP_SELECTORS.register_module(name=...)`` or :func:`register_selector`.
A selector that can tell at build time whether it fits a module has a
``check(module, **options)`` attribute, which the tap calls on each tapped
module when it is built.
"""
import math
from dataclasses import dataclass, field
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn

from cls_kd.registry import TAP_SELECTORS

from .attention import attention_probs, check_attention

__all__ = [
    'SelectorContext', 'TAP_SELECTORS', 'register_selector', 'token_grid'
]


@dataclass
class SelectorContext:
    """What a selector may need to know about the tapped module.

    Args:
        module (nn.Module): The tapped module.
        num_prefix_tokens (int, optional): Class/distillation/register tokens
            in front of the patch tokens, found on the enclosing backbone
            (``num_extra_tokens`` in mmpretrain, ``num_prefix_tokens`` in
            timm), or given in the tap config.
        inputs (tuple): Positional inputs of the module call.
        kwargs (dict): Keyword inputs of the module call.
    """
    module: nn.Module
    num_prefix_tokens: Optional[int] = None
    inputs: tuple = ()
    kwargs: dict = field(default_factory=dict)


def register_selector(name: str):
    """Decorator registering a selector function in ``TAP_SELECTORS`` under
    ``name``; a KeyError if the name is taken."""
    return TAP_SELECTORS.register_module(name=name)


def _prefix(ctx: SelectorContext, selector: str) -> int:
    if ctx.num_prefix_tokens is None:
        raise ValueError(
            f'Selector {selector!r} needs the number of prefix (class/dist) '
            f'tokens, but no enclosing module of '
            f'{type(ctx.module).__name__} defines num_extra_tokens or '
            f'num_prefix_tokens; give num_prefix_tokens in the selector.')
    return ctx.num_prefix_tokens


def _tokens(value, selector: str) -> torch.Tensor:
    if not (torch.is_tensor(value) and value.dim() == 3):
        shape = tuple(value.shape) if torch.is_tensor(value) else type(value)
        raise ValueError(f'Selector {selector!r} expects tokens (B, N, C), '
                         f'got {shape}.')
    return value


@TAP_SELECTORS.register_module(name='output')
def select_output(value, ctx):
    """The captured value unchanged."""
    return value


@TAP_SELECTORS.register_module(name='cls_token')
def select_cls_token(value, ctx):
    """Token 0, (B, C)."""
    return _tokens(value, 'cls_token')[:, 0]


@TAP_SELECTORS.register_module(name='dist_token')
def select_dist_token(value, ctx):
    """Token 1 of a distilled ViT, (B, C)."""
    if _prefix(ctx, 'dist_token') < 2:
        raise ValueError('Selector dist_token needs a backbone with a '
                         'distillation token (2 prefix tokens).')
    return _tokens(value, 'dist_token')[:, 1]


@TAP_SELECTORS.register_module(name='patch_tokens')
def select_patch_tokens(value, ctx):
    """Patch tokens without class/dist/register tokens, (B, N, C)."""
    return _tokens(value, 'patch_tokens')[:, _prefix(ctx, 'patch_tokens'):]


def token_grid(num_tokens: int,
               size: Optional[Sequence[int]] = None,
               who: str = 'token_grid',
               option: Optional[str] = 'hw') -> Tuple[int, int]:
    """(H, W) of ``num_tokens`` patch tokens: ``size`` checked against the
    count, else the square grid.

    Args:
        num_tokens (int): N.
        size (tuple, optional): (H, W) given by the user.
        who (str): Prefix of error messages.
        option (str, optional): Name of the caller's (H, W) option, named in
            the error for a non-square count; None if it has none.
    """
    if size is not None:
        if size[0] * size[1] != num_tokens:
            raise ValueError(f'{who}: {option}={tuple(size)} does not fit '
                             f'{num_tokens} tokens.')
        return int(size[0]), int(size[1])
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        hint = f'; give {option}=(H, W)' if option else ''
        raise ValueError(f'{who}: {num_tokens} tokens do not form a square '
                         f'grid{hint}.')
    return side, side


@TAP_SELECTORS.register_module(name='patch_map')
def select_patch_map(value, ctx, hw=None):
    """Patch tokens as a feature map (B, C, H, W); square grid by default.

    Args:
        hw (tuple[int], optional): The grid (H, W) of the patch tokens.
            Defaults to None (a square grid).
    """
    tokens = select_patch_tokens(value, ctx)
    B, N, C = tokens.shape
    h, w = token_grid(N, hw, 'Selector patch_map')
    return tokens.transpose(1, 2).reshape(B, C, h, w)


@TAP_SELECTORS.register_module(name='index')
def select_index(value, ctx, index=-1):
    """Element ``index`` of a tuple/list output (e.g. a backbone's stages).

    Args:
        index (int): The element. Defaults to -1 (the last).
    """
    if not isinstance(value, (tuple, list)):
        raise ValueError(f'Selector index expects a tuple/list output, got '
                         f'{type(value).__name__}.')
    return value[index]


@TAP_SELECTORS.register_module(name='attn_probs')
def select_attn_probs(value, ctx, query=None):
    """Attention probabilities of an attention module, float32.

    Recomputed from the module's inputs exactly as its class computes them
    (see :mod:`cls_kd.models.taps.attention` for the supported classes), so
    the module itself keeps its fused attention kernel; only tapped blocks
    pay for the explicit matrix. ``query=None`` gives (B, heads, N, N);
    ``'cls'`` or an int one query row, (B, heads, N); a list of ints those
    rows, (B, heads, len(query), N).

    Args:
        query (None | str | int | list[int]): Which query rows: None (all),
            ``'cls'`` (row 0), an int or a list of ints. Defaults to None.
    """
    return attention_probs(ctx.module, ctx.inputs, ctx.kwargs, query)


select_attn_probs.check = check_attention
