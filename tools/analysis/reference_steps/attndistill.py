"""AttnDistill written out (label-free): the student's class token through
its projector against the teacher's, and the last block's class-token
attention rows of both, computed from the attention module's input."""
from functools import partial

import torch
from mmpretrain.models.utils import MultiheadAttention

from cls_kd.models.losses.attn_distill import (
    attn_distill_align_loss,
    attn_distill_attention_loss,
)

from .common import ReferenceUnsupported, parse, source, unary

__all__ = ['BUILDERS', 'CLS_ROW', 'check_attention', 'cls_attention_row']

#: The tap selector of the attention rows the reference writes out.
CLS_ROW = dict(type='attn_probs', query='cls')


def check_attention(attn) -> None:
    """Refuse an attention module whose rows :func:`cls_attention_row`
    does not write out."""
    if type(attn) is not MultiheadAttention or isinstance(
            attn.scaled_dot_product_attention, partial):
        raise ReferenceUnsupported(
            f'the attention rows of a {type(attn).__name__} are not written '
            f'out (mmpretrain\'s MultiheadAttention without qk_scale).')


def cls_attention_row(attn: MultiheadAttention,
                      x: torch.Tensor) -> torch.Tensor:
    """The class token's attention probabilities in mmpretrain's
    ``MultiheadAttention`` for its input ``x`` (B, N, C): softmax of
    q_cls k^T / sqrt(head_dims), (B, heads, N), float32."""
    B, N, _ = x.shape
    qkv = attn.qkv(x).reshape(B, N, 3, attn.num_heads, attn.head_dims)
    q = qkv[:, :1, 0].transpose(1, 2)  # B, heads, 1, head_dims
    k = qkv[:, :, 1].transpose(1, 2)  # B, heads, N, head_dims
    with torch.autocast(x.device.type, enabled=False):
        logits = (q.float() * attn.head_dims**-0.5) @ k.float().transpose(
            -2, -1)
    return logits.softmax(-1)[:, :, 0]


def _align_term(step, name, module, inputs, factor):
    """``preds='proj(s_cls)'`` (the projector on the student's class
    token) against ``targets='t_cls'``."""
    preds = unary(parse(inputs.get('preds')))
    target = source(parse(inputs.get('targets')))
    if preds is None or source(preds[1]) is None or target is None:
        raise ReferenceUnsupported(
            f"{name}: AttnDistillAlignLoss reads {inputs}; the reference "
            f"knows preds='proj(s_cls)', targets='t_cls'.")
    proj = step.connector(preds[0], 'AttnDistillProjector')
    s, t = step.tap(source(preds[1])), step.tap(target)
    w = module.loss_weight * factor
    f = step.features
    return lambda v: w * attn_distill_align_loss(proj(f[s]), f[t])


def _attention_term(step, name, module, inputs, factor):
    """``attn_s``, ``attn_t``: class-token attention rows of both models."""
    names = [source(parse(inputs.get(k))) for k in ('attn_s', 'attn_t')]
    if None in names or any(
            step.selector(n) != CLS_ROW for n in names) or step.owner(
                names[0]) != 'student' or step.owner(names[1]) == 'student':
        raise ReferenceUnsupported(
            f'{name}: AttnDistillAttentionLoss reads {inputs}; the reference '
            f'knows a student and a teacher tap with selector {CLS_ROW}.')
    s, t = map(step.tap, names)
    w = module.loss_weight * factor
    options = dict(tau=module.tau, clamp=module.clamp,
                   safe_resize=module.safe_resize, aggregate=module.aggregate)
    f = step.features
    return lambda v: w * attn_distill_attention_loss(f[s], f[t], **options)


BUILDERS = dict(
    AttnDistillAlignLoss=_align_term,
    AttnDistillAttentionLoss=_attention_term)
