"""A one-screen account of what a distiller will do, logged when it is
built: its student and teachers (where each teacher's weights came from),
taps with the shapes the dry run captured, connectors, loss terms with
their inputs, weights and schedules, and the stages of training."""
from typing import List

import torch.nn as nn
from mmengine.logging import MMLogger

from .wiring import _text

__all__ = ['distiller_summary', 'log_distiller_summary']

_TITLE = ' cls_kd distiller summary '
_WIDTH = 78
# Loss attributes that say how strongly, or how, a term counts.
_WEIGHT_ATTRS = ('loss_weight', 'alpha', 'beta', 'gamma', 'temperature',
                 'tau')


def _count(n: int) -> str:
    """A parameter count: ``'1.23 M'``, ``'45.6 K'`` or ``'789'``."""
    if n >= 1e6:
        return f'{n / 1e6:.2f} M'
    if n >= 1e3:
        return f'{n / 1e3:.1f} K'
    return str(n)


def _params(module: nn.Module) -> str:
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    if trainable == total:
        return f'{_count(total)} parameters'
    if trainable == 0:
        return f'{_count(total)} parameters (frozen)'
    return f'{_count(total)} parameters ({_count(trainable)} trainable)'


def _model_type(model: nn.Module) -> str:
    backbone = getattr(model, 'backbone', None)
    name = type(model).__name__
    return f'{name}({type(backbone).__name__})' if backbone is not None \
        else name


def _teacher_lines(model) -> List[str]:
    reports = getattr(model.teachers, 'reports', {})
    lines = []
    for name, teacher in model.teachers.items():
        lines.append(f'  {name}: {_model_type(teacher)}, {_params(teacher)}')
        if name in getattr(model.teachers, 'train_mode', ()):
            lines.append('    mode: follows train() (train_mode=True)')
        report = reports.get(name)
        if report is None:
            lines.append('    weights: not reported by the loader')
            continue
        lines.append(f'    config: {report["config"]}')
        if report.get('checkpoint') is None:
            lines.append('    weights: RANDOM (no checkpoint)')
            continue
        keys = (f'{report["loaded"]}/{report["total"]} keys loaded')
        if report.get('unexpected'):
            keys += (f', {report["unexpected"]} checkpoint keys the model '
                     f'lacks ignored')
        lines.append(f'    checkpoint: {report["checkpoint"]} ({keys})')
    return lines or ['  (none)']


def _tap_lines(model) -> List[str]:
    sets = [model.captures.student, *model.captures.teachers.values()]
    taps = [tap for taps in sets for tap in taps]
    shapes = model.captures.shapes
    if not taps:
        return ['  (none)']
    lines = []
    for tap in taps:
        options = getattr(tap, '_select_options', None)
        selector = tap.selector_type + (f'{options}' if options else '')
        where = f'{tap.owner}:{tap.path}'
        if tap.capture == 'input':
            where += ' (input)'
        shape = shapes.get(tap.name, 'not captured' if shapes else
                           'unknown (no dry run)')
        lines.append(f'  {tap.name}: {where}, selector {selector} -> '
                     f'{shape}')
    return lines


def _loss_lines(model) -> List[str]:
    lines = []
    weight = getattr(model, 'student_loss_weight', None)
    if weight is not None:
        lines.append(f'  loss_cls: the student\'s own loss x {weight:g} '
                     f'(student_loss_weight)')
    for term in model.wiring.terms:
        inputs = ', '.join(f'{arg}={_text(value)}'
                           for arg, value in term.inputs.items())
        attrs = [
            f'{attr}={getattr(term.module, attr):g}' for attr in _WEIGHT_ATTRS
            if isinstance(getattr(term.module, attr, None), (int, float))
            and not isinstance(getattr(term.module, attr), bool)
        ]
        lines.append(f'  {term.name}: {type(term.module).__name__}'
                     f'({", ".join(attrs)}) <- {inputs}')
        lines.append(f'    schedule: {_schedule(term.schedule)}')
    return lines or ['  (none)']


def _schedule(schedule) -> str:
    if schedule.constant:
        return 'constant (factor 1)'
    parts = []
    for by, fn, args in schedule.parts:
        kwargs = ', '.join(f'{k}={v}' for k, v in args.items())
        parts.append(f'{fn.__name__.lstrip("_")} by {by} ({kwargs})')
    return ' x '.join(parts)


def _stage_lines(model) -> List[str]:
    plan = model.stage_plan
    lines = []
    start = 0
    for stage in plan.stages:
        end = 'end' if stage.end is None else stage.end
        span = f'{plan.by}s [{start}, {end})'
        if stage.distill:
            what = 'distil ' + (', '.join(stage.losses)
                                if stage.losses is not None else 'all terms')
        else:
            what = 'no distillation (teachers not run)'
        if stage.student_loss_weight is not None:
            what += f', student_loss_weight {stage.student_loss_weight:g}'
        lines.append(f'  {span}: {what}')
        start = stage.end
    return lines


def distiller_summary(model) -> str:
    """What a built distiller consists of, as a framed text block.

    Args:
        model (BaseDistiller): The distiller.

    Returns:
        str: Student, teachers (config, checkpoint, keys loaded,
        parameters), taps (model, path, selector, shape captured by the
        build-time dry run), connectors (parameters), loss terms (inputs,
        weights, schedule) and stages.
    """
    size = 'x'.join(map(str, model.input_size))
    connectors = [
        f'  {name}: {type(c).__name__}, {_params(c)}'
        for name, c in model.connectors.items()
    ] or ['  (none)']
    n_conn = sum(p.numel() for p in model.connectors.parameters())
    body = [
        f'{type(model).__name__}',
        f'Student: {_model_type(model.student)}, {_params(model.student)}',
        'Teachers (frozen, eval mode unless said, outside the checkpoints):',
        *_teacher_lines(model),
        f'Taps (shapes from the build-time dry run, 2 images of {size}):',
        *_tap_lines(model),
        f'Connectors (trained with the student, {_count(n_conn)} '
        f'parameters in all; extract_student.py drops them):',
        *connectors,
        'Losses (name: type(weights) <- inputs):',
        *_loss_lines(model),
        'Stages:',
        *_stage_lines(model),
    ]
    rule = '=' * _WIDTH
    title = _TITLE.center(_WIDTH, '=')
    return '\n'.join([title, *body, rule])


def log_distiller_summary(model) -> None:
    """Log :func:`distiller_summary` at INFO on mmengine's current logger."""
    MMLogger.get_current_instance().info('\n' + distiller_summary(model))
