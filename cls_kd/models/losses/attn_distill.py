"""AttnDistill: align the projected CLS token and guide the last attention.

Reference: Wang et al., "Attention Distillation: self-supervised vision
transformer students need more guidance", BMVC 2022. The student's projector
is a connector: see :class:`~cls_kd.models.connectors.AttnDistillProjector`.
Inputs come from taps: the CLS tokens with ``selector='cls_token'``, the
attention rows with ``selector=dict(type='attn_probs', query='cls')`` on the
last block's attention module.
"""
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cls_kd.errors import check_number
from cls_kd.registry import MODELS

from ..taps import token_grid

__all__ = [
    'AttnDistillAlignLoss', 'AttnDistillAttentionLoss', 'aggregate_heads',
    'attn_distill_align_loss', 'attn_distill_attention_loss', 'nan_rows',
    'resize_attention_row'
]


def attn_distill_align_loss(preds: Tensor, targets: Tensor) -> Tensor:
    """Squared error averaged over the batch and the channels (mean-MSE);
    the teacher's CLS is a constant."""
    return F.mse_loss(preds.float(), targets.detach().float())


def resize_attention_row(attn: Tensor,
                         num_patches: int,
                         min_value: Optional[float] = None,
                         aggregate: bool = False) -> Tensor:
    """Resample CLS-query attention rows to another square patch grid.

    The CLS entry c is kept; the patch part, laid out on its √N×√N grid, is
    resized bicubically (``align_corners=False``) to the √M×√M grid and
    scaled to sum to 1 − c, as the published code does. With ``min_value``,
    the rows that would make the published loss NaN (:func:`nan_rows`, which
    depends on ``aggregate``) instead have their resampled patch part
    clamped to ≥ ``min_value`` before the scaling; the other rows are
    unchanged.

    Args:
        attn (Tensor): (B, H, 1 + N) rows, CLS entry first.
        num_patches (int): M, the patch count of the new grid.
        min_value (float, optional): Lower bound of a guarded row's patch
            part. Defaults to None (no guard: the published rows).
        aggregate (bool): Whether the heads are aggregated next (what makes
            a negative entry NaN). Defaults to False.

    Returns:
        Tensor: (B, H, 1 + M).
    """
    B, H, L = attn.shape
    src = token_grid(L - 1, who='AttnDistillAttentionLoss: teacher patches',
                     option=None)
    dst = token_grid(num_patches,
                     who='AttnDistillAttentionLoss: student patches',
                     option=None)
    cls = attn[..., :1]  # B, H, 1
    patch = attn[..., 1:].reshape(B, H, *src)
    patch = F.interpolate(patch, size=dst, mode='bicubic',
                          align_corners=False).flatten(2)  # B, H, M
    rows = patch * ((1 - cls) / patch.sum(-1, keepdim=True))
    if min_value is not None:
        safe = patch.clamp(min=min_value)
        safe = safe * ((1 - cls) / safe.sum(-1, keepdim=True))
        rows = torch.where(nan_rows(rows, aggregate), safe, rows)
    return torch.cat([cls, rows], dim=-1)


def nan_rows(rows: Tensor, aggregate: bool) -> Tensor:
    """Bool (B, H, 1) mask of the resampled teacher rows (B, H, L) that
    make the published loss NaN: a NaN entry; and, when the heads are
    aggregated (log of each entry), a negative or infinite one as well.

    Bicubic resampling of a peaky row overshoots below zero next to the
    peak; without aggregation the final clamp lifts such entries and the
    published loss stays finite, so only aggregation needs them guarded.
    """
    bad = rows.isnan()
    if aggregate:
        bad = bad | (rows < 0) | rows.isinf()
    return bad.any(-1, keepdim=True)


def aggregate_heads(attn: Tensor, tau: float) -> Tensor:
    """softmax_j((1/τ)·Σ_h log a_h,j): one row from all heads, (B, H, L) ->
    (B, 1, L). A sum over heads, not a mean, as in the published code."""
    return F.softmax(attn.log().sum(1, keepdim=True) / tau, dim=-1)


def _clamp_rows(attn: Tensor, low: float, high: float) -> Tensor:
    attn = attn.clamp(low, high)
    return attn / attn.sum(-1, keepdim=True)


def attn_distill_attention_loss(attn_s: Tensor,
                                attn_t: Tensor,
                                tau: float = 10.0,
                                clamp: Sequence[float] = (1e-5, 0.996),
                                safe_resize: bool = True,
                                aggregate: Optional[bool] = None) -> Tensor:
    """KL(teacher ‖ student) between CLS-query attention rows, summed over
    heads and tokens and divided by the batch size; in float32, the teacher
    a constant.

    Steps, as the published code: (1) a teacher row of another length is
    resampled to the student's grid (:func:`resize_attention_row`);
    (2) if aggregating, both models' heads become one row
    (:func:`aggregate_heads`); (3) both are clamped to ``clamp`` and
    renormalised to rows summing to 1. With ``safe_resize``, a resampled
    teacher row that would make the published loss NaN (:func:`nan_rows`)
    has its patch part clamped to ≥ ``clamp[0]`` before the rescaling; every
    other row, hence every loss the published code computes as a finite
    number, is left as published.

    Args:
        attn_s (Tensor): Student rows, (B, H_s, 1 + N_s).
        attn_t (Tensor): Teacher rows, (B, H_t, 1 + N_t).
        tau (float): Temperature τ of the head aggregation.
        clamp (tuple[float]): (low, high) bounds of the probabilities.
        safe_resize (bool): Guard the resampled teacher rows that would be
            NaN.
        aggregate (bool, optional): Aggregate heads; None for "when the
            head counts differ".

    Returns:
        Tensor: Scalar loss, float32.
    """
    attn_s = attn_s.float()
    attn_t = attn_t.detach().float()
    if aggregate is None:
        aggregate = attn_s.shape[1] != attn_t.shape[1]
    if attn_t.shape[-1] != attn_s.shape[-1]:
        attn_t = resize_attention_row(attn_t, attn_s.shape[-1] - 1,
                                      clamp[0] if safe_resize else None,
                                      aggregate)
    if aggregate:
        attn_s = aggregate_heads(attn_s, tau)
        attn_t = aggregate_heads(attn_t, tau)
    attn_s = _clamp_rows(attn_s, *clamp)
    attn_t = _clamp_rows(attn_t, *clamp)
    kl = F.kl_div(attn_s.log(), attn_t, reduction='sum')
    return kl / attn_s.shape[0]


def check_attention_rows(attn_s: Tensor, attn_t: Tensor,
                         aggregate: Optional[bool]) -> None:
    """Raise a ``ValueError`` that says what to fix unless the two models'
    CLS-query attention rows can be compared."""
    what = 'AttnDistillAttentionLoss'
    if attn_s.dim() != 3 or attn_t.dim() != 3:
        raise ValueError(
            f'{what}: expected CLS-query attention rows (B, heads, 1 + N) '
            f'from both models, got student {tuple(attn_s.shape)} and '
            f'teacher {tuple(attn_t.shape)} (tap the last attention module '
            f"with selector=dict(type='attn_probs', query='cls')).")
    if attn_s.shape[0] != attn_t.shape[0]:
        raise ValueError(
            f'{what}: batch sizes differ, student {tuple(attn_s.shape)} vs '
            f'teacher {tuple(attn_t.shape)}.')
    if min(attn_s.shape[2], attn_t.shape[2]) < 2:
        raise ValueError(
            f'{what}: a row needs the CLS entry and at least one patch, got '
            f'student {tuple(attn_s.shape)} and teacher '
            f'{tuple(attn_t.shape)}.')
    if attn_s.shape[1] != attn_t.shape[1] and aggregate is False:
        raise ValueError(
            f'{what}: head counts differ, student {attn_s.shape[1]} vs '
            f'teacher {attn_t.shape[1]}, and aggregate=False; compare them '
            f'with aggregate=None or True (one row per model from all its '
            f'heads).')


@MODELS.register_module()
class AttnDistillAlignLoss(nn.Module):
    """AttnDistill's projector alignment: mean-MSE between the student's
    projected CLS token and the teacher's CLS after its final LayerNorm.

    Args:
        loss_weight (float): Weight of the loss. Defaults to 1.0 (the
            paper's).
    """

    def __init__(self, loss_weight: float = 1.0):
        super().__init__()
        check_number('loss_weight', loss_weight, low=0)
        self.loss_weight = loss_weight

    def forward(self, preds: Tensor, targets: Tensor) -> Tensor:
        """Compute the loss.

        Args:
            preds (Tensor): Projected student CLS, (B, D_t).
            targets (Tensor): Teacher CLS after its final norm, (B, D_t);
                not back-propagated.

        Returns:
            Tensor: Scalar loss, float32.
        """
        if preds.dim() != 2 or targets.dim() != 2:
            raise ValueError(
                f'AttnDistillAlignLoss: expected CLS tokens (B, D) from both '
                f'models, got student {tuple(preds.shape)} and teacher '
                f"{tuple(targets.shape)} (tap them with selector="
                f"'cls_token').")
        if preds.shape != targets.shape:
            raise ValueError(
                f'AttnDistillAlignLoss: student {tuple(preds.shape)} vs '
                f'teacher {tuple(targets.shape)}; project the student CLS '
                f'with AttnDistillProjector(in_channels=..., out_channels='
                f'{targets.shape[1]}).')
        return self.loss_weight * attn_distill_align_loss(preds, targets)


@MODELS.register_module()
class AttnDistillAttentionLoss(nn.Module):
    """AttnDistill's attention guidance on the last block's CLS-query rows.

    A teacher row with another patch count is resampled bicubically to the
    student's grid, in either direction (the paper only shrinks, /8 → /16);
    both grids must be square. Models with different head counts are
    compared through one aggregated row each, softmax_j((1/τ)·Σ_h log a_h,j).
    Both sides are then clamped to ``clamp`` and renormalised, and the loss
    is KL(teacher ‖ student) summed over heads and tokens, divided by B.

    ``safe_resize`` (on by default) only acts where the published code
    gives NaN: bicubic resampling of a peaky teacher row overshoots below
    zero next to the peak, and with head aggregation the published code
    takes the log of those entries. Only such rows (and rows with a NaN
    entry) get their resampled patch part clamped to ≥ ``clamp[0]`` before
    it is rescaled to sum to 1 − c (c the teacher's CLS entry). Wherever the
    published loss is finite — in particular every resize without
    aggregation, DINO ViT-S/8 → ViT-S/16 — the loss is the published one.

    Args:
        loss_weight (float): Weight of the loss. Defaults to 0.1 (the
            paper's).
        tau (float): Temperature τ of the head aggregation. Defaults to 10.
        clamp (tuple[float]): (low, high) bounds of the probabilities,
            0 < low < high ≤ 1. Defaults to (1e-5, 0.996).
        safe_resize (bool): Clamp the resampled patch part of the teacher
            rows that would make the published loss NaN, and only those.
            Defaults to True.
        aggregate (bool, optional): Aggregate the heads: None does it when
            the head counts differ (the paper's pairs), True always, False
            never (then the head counts must match). Defaults to None.
    """

    def __init__(self,
                 loss_weight: float = 0.1,
                 tau: float = 10.0,
                 clamp: Sequence[float] = (1e-5, 0.996),
                 safe_resize: bool = True,
                 aggregate: Optional[bool] = None):
        super().__init__()
        check_number('loss_weight', loss_weight, low=0)
        check_number('tau', tau, low=0, low_open=True)
        if len(clamp) != 2:
            raise ValueError(f'clamp must be (low, high), got {clamp!r}')
        check_number('clamp[0]', clamp[0], low=0, high=1, low_open=True)
        check_number('clamp[1]', clamp[1], low=0, high=1, low_open=True)
        if not clamp[0] < clamp[1]:
            raise ValueError(f'clamp must be (low, high) with 0 < low < high '
                             f'<= 1, got {clamp!r}')
        self.loss_weight = loss_weight
        self.tau = tau
        self.clamp = (float(clamp[0]), float(clamp[1]))
        self.safe_resize = safe_resize
        self.aggregate = aggregate

    def forward(self, attn_s: Tensor, attn_t: Tensor) -> Tensor:
        """Compute the loss.

        Args:
            attn_s (Tensor): Student attention probabilities of the CLS
                query, (B, H_s, 1 + N_s), CLS entry first.
            attn_t (Tensor): Teacher's, (B, H_t, 1 + N_t); not
                back-propagated.

        Returns:
            Tensor: Scalar loss, float32.
        """
        check_attention_rows(attn_s, attn_t, self.aggregate)
        return self.loss_weight * attn_distill_attention_loss(
            attn_s, attn_t, self.tau, self.clamp, self.safe_resize,
            self.aggregate)
