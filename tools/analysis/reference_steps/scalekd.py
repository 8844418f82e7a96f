"""ScaleKD written out: per view, the stage-3 student feature through its
cross-attention projector and the teacher's own last stage (teacher
parameter perception, TPP, with autograd), and the last student feature
through a projector queried by that output; both mimic the teacher's final
feature. The KD term is the logit family's.

The TPP path is written out through the teacher's modules, as its forward
runs them: a Swin's patch merging, last-stage blocks and norm, or a ViT's
(BEiT's, EVA's) last blocks and final norm.
"""
import math
from functools import partial

import mmpretrain.models.backbones as mmb
import torch

from cls_kd.models.distillers.expressions import Call
from cls_kd.models.losses.scalekd import dual_view_mimic_loss

from .common import ReferenceUnsupported, parse, source, unary

__all__ = ['BUILDERS', 'swin_stage', 'vit_blocks']


def swin_stage(backbone, stage, x):
    """Stage ``stage`` of an mmpretrain Swin on tokens (B, H*W, C) of the
    stage before it (a square grid): the patch merging, the blocks, the
    stage's norm, as ``SwinTransformer.forward`` runs them."""
    side = math.isqrt(x.shape[1])
    x, hw = backbone.stages[stage - 1].downsample(x, (side, side))
    for block in backbone.stages[stage].blocks:
        x = block(x, hw)
    return getattr(backbone, f'norm{stage}')(x)  # B, H/2*W/2, 2C


def vit_blocks(backbone, start, final_norm, with_prefix, x):
    """Blocks ``start:`` of an mmpretrain ViT or BEiT (EVA) on patch tokens
    (B, N, C), then its final norm if it has one.

    ``with_prefix``: the backbone's own class token is put in front, as its
    forward builds it before block 0 (with its position embedding if the
    backbone's covers it), and dropped after.
    """
    if with_prefix:
        cls = backbone.cls_token
        pos = getattr(backbone, 'pos_embed', None)
        if pos is not None and pos.shape[1] == x.shape[1] + 1:
            cls = cls + pos[:, :1]
        cls = backbone.pre_norm(cls) if hasattr(backbone, 'pre_norm') else cls
        x = torch.cat([cls.to(x.dtype).expand(x.shape[0], -1, -1), x], 1)
    extra = ()
    if isinstance(backbone, mmb.BEiTViT):  # BEiT blocks take a shared bias
        shared = backbone.rel_pos_bias
        extra = (shared() if shared is not None else None, )
    for block in backbone.layers[start:]:
        x = block(x, *extra)
    if final_norm and getattr(backbone, 'final_norm', False):
        x = backbone.ln1(x)
    return x[:, 1:] if with_prefix else x


def teacher_part(step, name):
    """The TeacherPart connector ``name`` as a function of its input,
    written out through the reference's teacher."""
    runner = step.original_connector(name, 'TeacherPart').runner
    kind = type(runner).__name__
    backbone = step.teacher.get_submodule(runner.backbone)
    if kind == 'SwinStageRunner' and type(backbone) is mmb.SwinTransformer:
        stage = runner.stage % len(backbone.stages)
        if (stage > 0 and runner.with_downsample and runner.final_norm
                and not backbone.out_after_downsample):
            return partial(swin_stage, backbone, stage)
    elif kind == 'ViTBlocksRunner' and runner.end is None and isinstance(
            backbone, (mmb.BEiTViT, mmb.VisionTransformer)) and (
                not isinstance(backbone, mmb.ViTEVA02)) and (
                    not runner.add_prefix or backbone.num_extra_tokens == 1):
        return partial(vit_blocks, backbone, runner.start, runner.final_norm,
                       runner.add_prefix)
    raise ReferenceUnsupported(
        f'connector {name}: {runner!r} on a {type(backbone).__name__} is not '
        f'written out (a Swin stage with its merging and norm; the last '
        f'blocks of a ViT, DeiT III or BEiT (not EVA-02, whose blocks take '
        f'the grid), the class token at most).')


def _tpp_path(step, expr):
    """``tpp(cap(s3))`` as a function of the step's values, computed once
    per step whichever term reads it first; None for another expression."""
    outer = unary(expr)
    inner = unary(outer[1]) if outer else None
    if inner is None or source(inner[1]) is None:
        return None
    part = teacher_part(step, outer[0])
    cap = step.connector(inner[0], 'CrossAttentionProjector')
    s3, key = step.tap(source(inner[1])), str(expr)

    def value(v):
        if key not in v:
            v[key] = part(cap(step.features[s3]))  # B, N_t, C_t
        return v[key]

    return value


def _mimic_term(step, name, module, inputs, factor):
    """One view of one stage: ``preds='tpp(cap3(s3))'`` (stage 3) or
    ``'cap4(s4, tpp(cap3(s3)))'`` (stage 4), ``targets`` a teacher tap."""
    preds = parse(inputs.get('preds'))
    target = source(parse(inputs.get('targets')))
    z = _tpp_path(step, preds)  # stage 3
    if (z is None and isinstance(preds, Call) and preds.key is None
            and len(preds.args) == 2 and source(preds.args[0])):
        queries = _tpp_path(step, preds.args[1])
        if queries is not None:  # stage 4
            cap = step.connector(preds.connector, 'CrossAttentionProjector')
            s4 = step.tap(source(preds.args[0]))

            def z(v):
                return cap(step.features[s4], queries(v))  # B, N_t, C_t

    if z is None or target is None or step.owner(target) in (
            None, 'student') or set(inputs) != {'preds', 'targets'}:
        raise ReferenceUnsupported(
            f'{name}: DualViewMimicLoss reads {inputs}; the reference knows '
            f"preds='tpp(cap3(s3))' or 'cap4(s4, tpp(cap3(s3)))' (a "
            f'TeacherPart on CrossAttentionProjectors) and a teacher tap as '
            f'targets.')
    t, view = step.tap(target), module.view
    w = module.loss_weight * factor
    return lambda v: w * dual_view_mimic_loss(z(v), step.features[t], view)


BUILDERS = dict(DualViewMimicLoss=_mimic_term)
