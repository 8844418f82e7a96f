"""Attention probabilities of attention modules, recomputed from their inputs.

The tapped module keeps its own (often fused) attention kernel; the tap
recomputes ``softmax(logits)`` from the inputs the forward hook saw, with the
module's own projections, scale, relative position biases and masks. Each
supported class has an adapter written from that class's ``forward``; any
other class, including a subclass that overrides ``forward``, is refused when
the tap is built rather than given plausible but wrong probabilities.

Supported: mmpretrain ``MultiheadAttention``, ``BEiTAttention``,
``WindowMSA`` and ``ShiftWindowMSA`` (whose windows are those of its
``w_msa``), and timm ``Attention``.
"""
import inspect
from functools import lru_cache, partial
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.models.utils import attention as mm_attention
from timm.layers import Attention as TimmAttention

__all__ = ['attention_probs', 'check_attention']

Query = Union[None, str, int, Sequence[int]]


def _take_rows(t: torch.Tensor, rows: Optional[List[int]]) -> torch.Tensor:
    """Rows ``rows`` (None: all) of dim -2 of ``t``."""
    if rows is None:
        return t
    n = t.shape[-2]
    if not all(-n <= r < n for r in rows):
        raise ValueError(f'attn_probs: query rows {rows} out of range for '
                         f'{n} tokens.')
    # Slices, not an index tensor: building one from the list would be a
    # blocking copy to the device in every step.
    return torch.cat([t.narrow(-2, r % n, 1) for r in rows], dim=-2)


def _bias_rows(bias: torch.Tensor,
               rows: Optional[List[int]]) -> torch.Tensor:
    """Rows of an additive bias or mask; a broadcast dim -2 is kept."""
    return bias if bias.shape[-2] == 1 else _take_rows(bias, rows)


def _logits(q: torch.Tensor, k: torch.Tensor, scale: float,
            rows: Optional[List[int]]) -> torch.Tensor:
    """``(q[rows] * scale) @ k^T`` in float32, (B, heads, R, N).

    Args:
        q, k (Tensor): Queries and keys, (B, heads, N, head_dim).
    """
    q = _take_rows(q, rows)
    with torch.autocast(q.device.type, enabled=False):
        return (q.float() * scale) @ k.float().transpose(-2, -1)


def _split_qk(qkv: torch.Tensor, num_heads: int):
    """Queries and keys (B, heads, N, head_dim) of a fused (B, N, 3C)
    projection, laid out as ``reshape(B, N, 3, heads, head_dim)``."""
    B, N, _ = qkv.shape
    qkv = qkv.reshape(B, N, 3, num_heads, -1).permute(2, 0, 3, 1, 4)
    return qkv[0], qkv[1]


def _relative_bias(module: nn.Module,
                   rows: Optional[List[int]]) -> torch.Tensor:
    """The module's relative position bias (heads, R, N), gathered only for
    the requested rows."""
    index = _take_rows(module.relative_position_index, rows)
    return module.relative_position_bias_table[index].permute(2, 0, 1)


def _mha_scale(module: nn.Module) -> float:
    """The factor mmpretrain's ``MultiheadAttention`` applies to q k^T.

    With ``qk_scale`` set, mmpretrain calls its Python implementation with
    ``scale=head_dims**-0.5``, which *divides* by it; that is reproduced.
    """
    fn = module.scaled_dot_product_attention
    func, kw = (fn.func, fn.keywords) if isinstance(fn, partial) else (fn, {})
    if func is F.scaled_dot_product_attention:
        return kw.get('scale') or module.head_dims**-0.5
    if func is mm_attention.scaled_dot_product_attention_pyimpl:
        return 1 / (kw.get('scale') or module.head_dims**0.5)
    raise TypeError(f'attn_probs: {type(module).__name__} computes its '
                    f'attention with {fn!r}, whose scale is unknown.')


def _mmpretrain_mha(module, call: dict, rows):
    q, k = _split_qk(module.qkv(call['x']), module.num_heads)
    return _logits(q, k, _mha_scale(module), rows)


def _beit(module, call: dict, rows):
    x = call['x']
    if module.bias == 'qv_bias':
        # Keys have no bias: the module concatenates zeros for them.
        bias = torch.cat((module.q_bias, torch.zeros_like(module.v_bias),
                          module.v_bias))
        qkv = F.linear(x, module.qkv.weight, bias)
    else:
        qkv = module.qkv(x)
    q, k = _split_qk(qkv, module.num_heads)
    logits = _logits(q, k, module.scale, rows)
    if module.relative_position_bias_table is not None:
        logits = logits + _relative_bias(module, rows)
    if call['rel_pos_bias'] is not None:  # shared by the backbone's layers
        logits = logits + _bias_rows(call['rel_pos_bias'], rows)
    return logits


def _window_msa(module, call: dict, rows):
    q, k = _split_qk(module.qkv(call['x']), module.num_heads)
    logits = _logits(q, k, module.scale, rows) + _relative_bias(module, rows)
    mask = call['mask']  # (windows, N, N): -100 across shifted regions
    if mask is not None:
        B_, H, R, N = logits.shape
        num_windows = mask.shape[0]
        logits = logits.view(B_ // num_windows, num_windows, H, R, N)
        logits = logits + _bias_rows(mask, rows)[None, :, None]
        logits = logits.view(B_, H, R, N)
    return logits


def _shift_window_msa(module, call: dict, rows):
    """The windows, shift and mask of ``ShiftWindowMSA.forward``, then the
    logits of its ``w_msa``: (B * windows, heads, R, window_size**2)."""
    query, (H, W) = call['query'], call['hw_shape']
    B, _, C = query.shape
    size, shift = module.window_size, module.shift_size
    if min(H, W) == size and not module.pad_small_map:
        shift = 0
    pad_r, pad_b = (size - W % size) % size, (size - H % size) % size
    x = F.pad(query.view(B, H, W, C), (0, 0, 0, pad_r, 0, pad_b))
    if shift > 0:
        x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
    mask = module.get_attn_mask(
        x.shape[1:3], window_size=size, shift_size=shift, device=x.device)
    windows = module.window_partition(x, size).view(-1, size**2, C)
    return _window_msa(module.w_msa, dict(x=windows, mask=mask), rows)


def _check_shift_window_msa(module):
    adapter = _find_adapter(module.w_msa)
    if adapter is None or adapter.logits is not _window_msa:
        raise TypeError(
            f'attn_probs: the w_msa of {type(module).__name__} is a '
            f'{type(module.w_msa).__name__}, not a supported WindowMSA.')


def _timm(module, call: dict, rows):
    q, k = _split_qk(module.qkv(call['x']), module.num_heads)
    q, k = module.q_norm(q), module.k_norm(k)
    # The fused kernel scales by head_dim**-0.5, the explicit path by scale.
    scale = module.head_dim**-0.5 if module.fused_attn else module.scale
    logits = _logits(q, k, scale, rows)
    mask = call['attn_mask']
    if call['is_causal']:  # takes precedence over attn_mask, as in timm
        N = k.shape[2]
        cols = torch.arange(N, device=k.device)
        row_ids = _take_rows(cols[:, None], rows)[:, 0]
        bias = logits.new_zeros(len(row_ids), N).masked_fill_(
            cols > row_ids[:, None], float('-inf'))
    elif mask is None:
        return logits
    elif mask.dtype == torch.bool:  # True: may attend
        mask = _bias_rows(mask, rows)
        bias = torch.zeros_like(mask, dtype=logits.dtype)
        bias.masked_fill_(~mask, float('-inf'))
    else:
        bias = _bias_rows(mask, rows)
    return logits + bias


class _Adapter(NamedTuple):
    """How to recompute the logits of one attention class.

    Args:
        logits (Callable): ``fn(module, call, rows) -> (B, heads, R, N)``
            float32 logits, ``call`` being the bound forward arguments.
        windowed (bool): Tokens are window positions (no class token).
        check (Callable, optional): ``fn(module)`` raising if this instance
            cannot be reproduced.
    """
    logits: Callable
    windowed: bool = False
    check: Optional[Callable] = None


_ADAPTERS: Dict[type, _Adapter] = {
    mm_attention.MultiheadAttention:
    _Adapter(_mmpretrain_mha, check=_mha_scale),
    mm_attention.BEiTAttention: _Adapter(_beit),
    mm_attention.WindowMSA: _Adapter(_window_msa, windowed=True),
    mm_attention.ShiftWindowMSA: _Adapter(
        _shift_window_msa, windowed=True, check=_check_shift_window_msa),
    TimmAttention: _Adapter(_timm),
}


def _find_adapter(module: nn.Module) -> Optional[_Adapter]:
    """The adapter of the module's class, or of the nearest base class if
    the module inherits that class's ``forward`` unchanged."""
    cls = type(module)
    for base in cls.__mro__:
        if base in _ADAPTERS:
            return _ADAPTERS[base] if cls.forward is base.forward else None
    return None


def _query_rows(query: Query) -> Optional[List[int]]:
    if query is None:
        return None
    if query == 'cls':
        return [0]
    if isinstance(query, int) and not isinstance(query, bool):
        return [query]
    if (isinstance(query, (list, tuple)) and query and all(
            isinstance(q, int) and not isinstance(q, bool) for q in query)):
        return list(query)
    raise ValueError(f"attn_probs: query must be None, 'cls', an int or a "
                     f'non-empty list of ints, got {query!r}.')


def check_attention(module: nn.Module, query: Query = None) -> None:
    """Raise unless :func:`attention_probs` can reproduce ``module``.

    Args:
        module (nn.Module): The attention module to tap.
        query (None | str | int | list[int]): As in :func:`attention_probs`.
    """
    _query_rows(query)
    adapter = _find_adapter(module)
    if adapter is None:
        supported = sorted(f'{c.__module__}.{c.__name__}' for c in _ADAPTERS)
        raise TypeError(
            f'attn_probs: no adapter for {type(module).__module__}.'
            f'{type(module).__name__} (subclasses count only if they keep '
            f'the forward of a supported class). Supported: {supported}.')
    if adapter.windowed and query == 'cls':
        raise ValueError(
            f"attn_probs: {type(module).__name__} attends within windows, "
            f"which have no class token; use query=0 for each window's "
            f'first token.')
    if adapter.check is not None:
        adapter.check(module)


@lru_cache(maxsize=None)
def _forward_signature(cls: type) -> inspect.Signature:
    """The signature of ``cls.forward`` (``self`` included), read once per
    class: building it costs more than the rest of a small tap."""
    return inspect.signature(cls.forward)


def attention_probs(module: nn.Module,
                    args: tuple,
                    kwargs: dict,
                    query: Query = None) -> torch.Tensor:
    """Softmax attention probabilities of one call of ``module``, in float32
    and before attention dropout.

    Args:
        module (nn.Module): A supported attention module.
        args (tuple): Positional inputs of the call.
        kwargs (dict): Keyword inputs of the call (``rel_pos_bias``,
            ``mask``, ``attn_mask``...).
        query (None | str | int | list[int]): Which query rows. None: all,
            (B, heads, N, N); ``'cls'``: row 0 only, (B, heads, N), computed
            without forming the N×N matrix; an int: that row, (B, heads, N);
            a list: those rows, (B, heads, len(query), N). B counts windows
            for window attention.
    """
    rows = _query_rows(query)
    adapter = _find_adapter(module)
    if adapter is None:
        check_attention(module, query)  # raises, naming the supported ones
    if 'forward' in vars(module):  # an instance's own forward
        call = inspect.signature(module.forward).bind(*args, **kwargs)
    else:
        call = _forward_signature(type(module)).bind(module, *args, **kwargs)
    call.apply_defaults()
    probs = adapter.logits(module, call.arguments, rows).softmax(dim=-1)
    if query is None or isinstance(query, (list, tuple)):
        return probs
    return probs[:, :, 0]
