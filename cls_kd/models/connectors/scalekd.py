"""ScaleKD's cross-attention projector (CAP).

Reference: Fan et al., "ScaleKD: Strong Vision Transformers Could Be
Excellent Teachers", NeurIPS 2024.
"""
import copy
import math
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from cls_kd.errors import describe
from cls_kd.registry import MODELS

from ..taps import token_grid
from .widths import MeasuredWidths, channels_of

__all__ = ['CrossAttentionProjector']

HW = Tuple[int, int]


def _pair(value, name: str) -> Optional[HW]:
    if value is None:
        return None
    if isinstance(value, int):
        value = (value, value)
    value = tuple(value)
    if len(value) != 2 or not all(isinstance(v, int) and v > 0
                                  for v in value):
        raise ValueError(f'CrossAttentionProjector: {name} must be a '
                         f'positive int or (H, W), got {value!r}.')
    return value


def _preset(s3: tuple, s4: tuple, norm: str = 'BN') -> dict:
    """Presets of one student for a Swin-L teacher (768 / 1536 channels)."""
    (c3, h3, g3, hw3), (c4, h4, g4, hw4) = s3, s4
    return {
        's3': dict(in_channels=c3, out_channels=768, num_heads=h3, gamma=g3,
                   in_size=(hw3, hw3), query_size=(14, 14), stem_norm=norm),
        's4': dict(in_channels=c4, out_channels=1536, num_heads=h4, gamma=g4,
                   in_size=(hw4, hw4), query_size=(7, 7), stem_norm=norm),
    }


def _build_zoo() -> dict:
    # (C_s, heads, gamma, student grid) per stage, METHODS.md §4 / the
    # published configs. Stage 3 is the TPP path (learnable 14x14 queries),
    # stage 4 takes its queries from the TPP output (7x7).
    rows = {
        'mobilenet-v1': _preset((512, 16, 5., 14), (1024, 24, 5., 7)),
        'resnet50': _preset((1024, 16, 5., 14), (2048, 24, 5., 7)),
        'convnext-t': _preset((384, 8, 1., 14), (768, 16, 1., 7)),
        'mixer-s16': _preset((512, 8, 5., 14), (512, 8, 5., 14)),
        'mixer-b16': _preset((768, 8, 5., 14), (768, 8, 5., 14)),
        'vit-s16': _preset((384, 8, 5., 14), (384, 8, 5., 14)),
        'vit-b16': _preset((768, 8, 5., 14), (768, 8, 5., 14)),
        'swin-t': _preset((384, 24, 1., 14), (768, 48, 1., 7), norm='LN'),
    }
    rows['resnet50-d'] = copy.deepcopy(rows['resnet50'])
    return {f'{name}-{stage}': cfg
            for name, stages in rows.items() for stage, cfg in stages.items()}


@MODELS.register_module()
class CrossAttentionProjector(MeasuredWidths, nn.Module):
    """Student feature -> teacher-like tokens by cross-attention (CAP).

    ``stem``: ReLU(BN(Conv3x3 C_s->C_s)) (LayerNorm over channels instead of
    BN for Swin students), plus a learnable positional embedding
    (1, C_s, H, W), trunc-normal std 0.02. Queries: learnable
    (H_q*W_q, C_t) or given to ``forward``, then ReLU(Conv1x1 C_t->C_t)
    (applied per token as a linear layer: the same function). Multi-head
    cross-attention, queries from the queries, keys and values from the
    student tokens, all projections with bias, logits scaled by
    gamma / sqrt(C_t / heads) (fused scaled-dot-product attention); output
    projection, **no residual**. Then LayerNorm and an FFN
    (C_t -> 4 C_t -> C_t, ReLU) whose residual is the LayerNorm's output.

    The output has one token per query, so the projector also resamples
    the grid (a 14x14 student map with 7x7 queries gives 7x7 tokens).

    Presets (``arch``): ``'<student>-s3'`` / ``'<student>-s4'`` for the
    students of the paper with a Swin-L teacher, see :attr:`arch_zoo`;
    explicit arguments override them (e.g. ``out_channels=1024,
    gamma=0.2, query_size=16`` for a BEiT/EVA-L/14 teacher).

    Args:
        arch (str, optional): A key of :attr:`arch_zoo`.
        in_channels (int, optional): Student channels C_s; left out (None,
            and no preset), measured on the input by the dry run.
        out_channels (int, optional): Teacher channels C_t; left out (None,
            and no preset), the channels of the given queries or of the
            target a loss compares the output with.
        num_heads (int): Attention heads; must divide C_t.
        gamma (float): Logit scale factor. Defaults to 1.
        in_size (int | tuple, optional): Student grid (H, W) of the
            positional embedding; inputs must have it. Left out (None, and
            no preset), measured on the input (a map, or square tokens).
        query_size (int | tuple, optional): Query grid (H_q, W_q). Needed
            for learnable queries; with given queries, checked if set.
        learnable_query (bool): Learn the queries (the TPP path's CAP);
            False takes them from ``forward``'s ``query`` (stage 4).
            Defaults to True.
        stem_norm (str): ``'BN'`` or ``'LN'``. Defaults to ``'BN'``.
        ffn_ratio (int): FFN hidden width over C_t. Defaults to 4.
    """

    arch_zoo = _build_zoo()

    def __init__(self,
                 arch: Optional[str] = None,
                 in_channels: Optional[int] = None,
                 out_channels: Optional[int] = None,
                 num_heads: Optional[int] = None,
                 gamma: Optional[float] = None,
                 in_size: Union[int, Sequence[int], None] = None,
                 query_size: Union[int, Sequence[int], None] = None,
                 learnable_query: Optional[bool] = None,
                 stem_norm: Optional[str] = None,
                 ffn_ratio: int = 4):
        super().__init__()
        preset = {}
        if arch is not None:
            if arch not in self.arch_zoo:
                raise ValueError(
                    f'CrossAttentionProjector: unknown arch {arch!r}; '
                    f'known: {sorted(self.arch_zoo)}.')
            preset = dict(self.arch_zoo[arch])
        given = dict(in_channels=in_channels, out_channels=out_channels,
                     num_heads=num_heads, gamma=gamma, in_size=in_size,
                     query_size=query_size, stem_norm=stem_norm,
                     learnable_query=learnable_query)
        preset.update({k: v for k, v in given.items() if v is not None})
        preset.setdefault('gamma', 1.0)
        preset.setdefault('stem_norm', 'BN')
        preset.setdefault('learnable_query', arch is None
                          or arch.endswith('-s3'))
        if preset.get('num_heads') is None:
            raise ValueError('CrossAttentionProjector: missing num_heads '
                             '(give it or an arch preset).')
        self.num_heads, self.gamma = preset['num_heads'], float(
            preset['gamma'])
        if self.gamma <= 0:
            raise ValueError(f'CrossAttentionProjector: gamma must be > 0, '
                             f'got {self.gamma}.')
        if preset['stem_norm'] not in ('BN', 'LN'):
            raise ValueError(f'CrossAttentionProjector: stem_norm must be '
                             f"'BN' or 'LN', got {preset['stem_norm']!r}.")
        self.query_size = _pair(preset.get('query_size'), 'query_size')
        self.learnable_query = bool(preset['learnable_query'])
        if self.learnable_query and self.query_size is None:
            raise ValueError('CrossAttentionProjector: learnable queries '
                             'need query_size=(H_q, W_q).')
        self.stem_norm_type = preset['stem_norm']
        self.ffn_ratio = ffn_ratio
        self._init_widths(
            in_channels=preset.get('in_channels'),
            out_channels=preset.get('out_channels'),
            in_size=_pair(preset.get('in_size'), 'in_size'))

    @property
    def in_size(self) -> Optional[HW]:
        return self._widths['in_size']

    def _build_layers(self, in_channels: int, out_channels: int,
                      in_size: HW) -> None:
        c_s, c_t, heads = in_channels, out_channels, self.num_heads
        if c_t % heads:
            raise ValueError(f'CrossAttentionProjector: num_heads={heads} '
                             f'does not divide out_channels={c_t}.')
        self.stem_conv = nn.Conv2d(c_s, c_s, 3, padding=1)
        self.stem_norm = nn.BatchNorm2d(c_s) \
            if self.stem_norm_type == 'BN' else nn.LayerNorm(c_s)
        self.pos_embed = nn.Parameter(torch.zeros(1, c_s, *in_size))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.learnable_query:
            # N(0, 1), as an nn.Embedding (the published projector's).
            self.query = nn.Parameter(
                torch.randn(math.prod(self.query_size), c_t))
        else:
            self.register_parameter('query', None)
        self.query_proj = nn.Linear(c_t, c_t)
        self.q = nn.Linear(c_t, c_t)
        self.k = nn.Linear(c_s, c_t)
        self.v = nn.Linear(c_s, c_t)
        self.proj = nn.Linear(c_t, c_t)
        self.norm = nn.LayerNorm(c_t)
        self.ffn = nn.Sequential(
            nn.Linear(c_t, self.ffn_ratio * c_t), nn.ReLU(inplace=True),
            nn.Linear(self.ffn_ratio * c_t, c_t))

    def measure_widths(self, inputs, target) -> dict:
        x = inputs[0]
        if torch.is_tensor(x) and x.dim() == 4:
            widths = dict(in_channels=x.shape[1], in_size=tuple(x.shape[2:]))
        elif torch.is_tensor(x) and x.dim() == 3:
            n, written = x.shape[1], self.in_size
            # Tokens do not tell a non-square grid: a written one that
            # holds as many tokens stands.
            grid = written if written and math.prod(written) == n else \
                token_grid(n, None, 'CrossAttentionProjector', 'in_size')
            widths = dict(in_channels=x.shape[2], in_size=grid)
        else:
            raise ValueError(f'its input is neither a map (B, C, H, W) nor '
                             f'tokens (B, H*W, C): {describe(x)}')
        query = inputs[1] if len(inputs) > 1 else None
        if query is not None:
            widths['out_channels'] = channels_of(query, 'its query')
        elif target is not None:
            widths['out_channels'] = channels_of(target, 'its target')
        return widths

    def _student_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Student map (B, C_s, H, W) or tokens (B, H*W, C_s) -> stem output
        plus positional embedding as tokens (B, H*W, C_s)."""
        h, w = self.in_size
        if x.dim() == 3 and x.shape[1] == h * w:
            x = x.transpose(1, 2).reshape(x.shape[0], -1, h, w)
        if x.dim() != 4 or tuple(x.shape[1:]) != (self.in_channels, h, w):
            raise ValueError(
                f'CrossAttentionProjector expects a student map (B, '
                f'{self.in_channels}, {h}, {w}) or tokens (B, {h * w}, '
                f'{self.in_channels}), got {tuple(x.shape)}.')
        x = self.stem_conv(x)
        if self.stem_norm_type == 'BN':
            x = F.relu(self.stem_norm(x)) + self.pos_embed
            return x.flatten(2).transpose(1, 2)
        x = F.relu(self.stem_norm(x.permute(0, 2, 3, 1)))  # B, H, W, C
        return (x + self.pos_embed.permute(0, 2, 3, 1)).flatten(1, 2)

    def _queries(self, query: Optional[torch.Tensor],
                 batch: int) -> torch.Tensor:
        if self.learnable_query:
            if query is not None:
                raise ValueError('CrossAttentionProjector: this projector '
                                 'learns its queries (learnable_query=True);'
                                 ' it takes no query input.')
            return self.query.unsqueeze(0).expand(batch, -1, -1)
        if query is None:
            raise ValueError('CrossAttentionProjector: learnable_query=False'
                             ' needs the queries, e.g. '
                             '"cap4(s_stage4, tpp(cap3(s_stage3)))".')
        if query.dim() == 4:  # B, C_t, H_q, W_q
            query = query.flatten(2).transpose(1, 2)
        n = math.prod(self.query_size) if self.query_size else query.shape[1]
        if query.dim() != 3 or tuple(query.shape[::2]) != (
                batch, self.out_channels) or query.shape[1] != n:
            raise ValueError(
                f'CrossAttentionProjector expects queries (B={batch}, {n}, '
                f'{self.out_channels}) or a map (B, {self.out_channels}, '
                f'H_q, W_q), got {tuple(query.shape)}.')
        return query

    def forward(self, x: torch.Tensor,
                query: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x: student map or tokens; query: (B, N_q, C_t) tokens or a map,
        only without learnable queries. Returns (B, N_q, C_t) tokens."""
        self._check_settled()
        tokens = self._student_tokens(x)
        b, n_k = tokens.shape[:2]
        queries = F.relu(self.query_proj(self._queries(query, b)))
        n_q, heads, c_t = queries.shape[1], self.num_heads, self.out_channels

        def split(t, n):  # B, n, C_t -> B, heads, n, C_t / heads
            return t.reshape(b, n, heads, c_t // heads).transpose(1, 2)

        q = split(self.q(queries), n_q)
        k, v = split(self.k(tokens), n_k), split(self.v(tokens), n_k)
        out = F.scaled_dot_product_attention(
            q, k, v, scale=self.gamma / math.sqrt(c_t / heads))
        out = self.proj(out.transpose(1, 2).reshape(b, n_q, c_t))
        out = self.norm(out)
        return out + self.ffn(out)

    def extra_repr(self) -> str:
        if self.pending_widths:
            return f'widths to measure: {self.pending_widths}'
        return (f'{self.in_channels}x{self.in_size[0]}x{self.in_size[1]} -> '
                f'{self.out_channels}, heads={self.num_heads}, '
                f'gamma={self.gamma}, query='
                f'{self.query_size if self.learnable_query else "input"}')
