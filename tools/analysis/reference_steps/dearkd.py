"""DearKD's hidden-state term written out: the patch tokens of the
student's early blocks laid out as maps and aligned by 1x1 convolutions,
against the teacher's stage maps pooled to the student's grid, MSE. (The
MHCA attention of those blocks is the student's own module; the DeiT token
term is the logit family's; stage 2 has no term and no teacher.)"""
from cls_kd.models.losses.feature import feature_mse_loss

from .common import ReferenceUnsupported, parse, source, unary

__all__ = ['BUILDERS']


def _listed(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _student_side(step, text):
    """``align(to_map(s))`` as a function of nothing (reads the step's
    features); None for another expression."""
    outer = unary(parse(text))
    inner = unary(outer[1]) if outer else None
    if inner is None or source(inner[1]) is None or step.owner(
            source(inner[1])) != 'student':
        return None
    align = step.connector(outer[0], 'ConvConnector')
    to_map = step.connector(inner[0], 'TokensToMap')
    s = step.tap(source(inner[1]))
    return lambda v: align(to_map(step.features[s]))  # B, C_t, H, W


def _teacher_side(step, text):
    """``pool(t)`` (a MapPool or MapResize on a teacher tap) or ``t``, as a
    function of the step's values, computed once per step; None for
    another expression."""
    expr = parse(text)
    call = unary(expr)
    name = source(call[1] if call else expr)
    if name is None or step.owner(name) in (None, 'student'):
        return None
    t = step.tap(name)
    if call is None:
        return lambda v: step.features[t]
    layout = step.connector(call[0], ('MapPool', 'MapResize'))
    key = str(expr)

    def value(v):
        if key not in v:
            v[key] = layout(step.features[t])
        return v[key]

    return value


def _hidden_term(step, name, module, inputs, factor):
    """``preds=['align0(to_map(s_block0))', ...]`` against
    ``targets=['to_grid(t_stage2)', ...]``, one pair per block (or one
    expression each)."""
    preds = [_student_side(step, p) for p in _listed(inputs.get('preds'))]
    targets = [
        _teacher_side(step, t) for t in _listed(inputs.get('targets'))
    ]
    if (not preds or None in preds + targets or len(preds) != len(targets)
            or set(inputs) != {'preds', 'targets'}):
        raise ReferenceUnsupported(
            f'{name}: FeatureMSELoss reads {inputs}; the reference knows '
            f"preds=['align(to_map(s_tap))', ...] (ConvConnector, "
            f"TokensToMap) and targets=['pool(t_tap)' or 't_tap', ...] "
            f'(MapPool or MapResize).')
    w, reduction = module.loss_weight * factor, module.reduction
    return lambda v: w * feature_mse_loss([p(v) for p in preds],
                                          [t(v) for t in targets], reduction)


BUILDERS = dict(FeatureMSELoss=_hidden_term)
