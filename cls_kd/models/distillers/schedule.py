"""When distillation is on, and how strongly: per-term weight schedules and
whole stages, evaluated on the training progress the schedule hook hands in.

Both are plain config:

- a loss term takes ``warmup=dict(by='epoch', length=N)`` (a linear ramp to
  1 over N steps) and/or ``schedule=`` one dict or a list of dicts whose
  factors multiply:
  ``dict(type='linear', by='epoch', begin=0, end=10, start_factor=0.,
  end_factor=1.)`` (constant outside ``[begin, end]``),
  ``dict(type='step', by='epoch', milestones=[30, 60], gamma=0.1)`` and
  ``dict(type='window', by='epoch', begin=0, end=30)`` (1 inside
  ``[begin, end)``, 0 outside: a term switched off after epoch 30);
- the distiller takes ``stages=[dict(by='epoch', end=250),
  dict(distill=False, student_loss_weight=1.)]``: consecutive stages, each
  up to its ``end`` (exclusive; the last has none), each with ``distill``
  (bool), optional ``losses`` (the names of the terms it runs, default all)
  and optional ``student_loss_weight``.

Every number is checked when the distiller is built: factors, ``gamma`` and
weights are finite and >= 0, positions (``begin``, ``end``, ``milestones``)
finite and >= 0, a warm-up ``length`` and a stage ``end`` integers >= 1.
A stage that starts at or after ``max_epochs`` is fitted away by
``tools/train.py`` (:func:`cls_kd.apis.fit_schedulers_to_max_epochs`).

A term whose factor is 0 is not computed and not logged; a teacher no
active term reads is not run.
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from cls_kd.errors import DistillerConfigError, check_number

__all__ = [
    'Progress', 'WeightSchedule', 'Stage', 'StagePlan', 'active_terms',
    'needs_progress'
]

_BY = ('epoch', 'iter')


@dataclass(frozen=True)
class Progress:
    """Where training is: 0-based epoch and iteration (as mmengine's
    ``runner.epoch`` / ``runner.iter`` before the step)."""
    epoch: int = 0
    iter: int = 0

    def at(self, by: str) -> int:
        return self.epoch if by == 'epoch' else self.iter


def _by(spec: dict, what: str) -> str:
    by = spec.pop('by', 'epoch')
    if by not in _BY:
        raise DistillerConfigError(
            f'{what}: by must be "epoch" or "iter", got {by!r}.')
    return by


def _linear(step, begin, end, start_factor, end_factor):
    if step <= begin:
        return start_factor
    if step >= end:
        return end_factor
    return start_factor + (end_factor - start_factor) * (step - begin) / (
        end - begin)


def _step(step, milestones, gamma):
    return gamma**sum(step >= m for m in milestones)


def _window(step, begin, end):
    return float(step >= begin and (end is None or step < end))


_KINDS = {
    'linear': (_linear, dict(begin=0, end=None, start_factor=0.,
                             end_factor=1.)),
    'step': (_step, dict(milestones=None, gamma=0.1)),
    'window': (_window, dict(begin=0, end=None)),
}


class WeightSchedule:
    """The factor of one loss term over training (1 when unscheduled).

    Args:
        name (str): The term's name, for messages.
        warmup (dict, optional): ``dict(by='epoch'|'iter', length=N)``:
            factor ``min(1, (step + 1) / N)``.
        schedule (dict | list[dict], optional): See the module docstring.
    """

    def __init__(self,
                 name: str,
                 warmup: Optional[dict] = None,
                 schedule=None):
        self.parts: List[Tuple[str, object, dict]] = []
        if warmup is not None:
            spec = dict(warmup)
            by = _by(spec, f'Loss {name!r} warmup')
            length = spec.pop('length', 0)
            if spec:
                raise DistillerConfigError(f'Loss {name!r}: warmup must be '
                                 f'dict(by="epoch"|"iter", length=N>=1).')
            check_number(f'model.losses.{name}.warmup.length', length,
                         low=1, integer=True)
            # Factor (step + 1) / N: the first step already learns a little.
            self.parts.append((by, _linear,
                               dict(begin=-1, end=int(length) - 1,
                                    start_factor=0., end_factor=1.)))
        key = f'model.losses.{name}.schedule'
        specs = [(key, schedule)] if isinstance(schedule, dict) else [
            (f'{key}[{i}]', spec) for i, spec in enumerate(schedule or [])]
        for where, spec in specs:
            self.parts.append(self._parse(name, dict(spec), where))

    @staticmethod
    def _parse(name: str, spec: dict, key: str):
        kind = spec.pop('type', None)
        if kind not in _KINDS:
            raise DistillerConfigError(
                f'Loss {name!r}: schedule type must be one of '
                f'{sorted(_KINDS)}, got {kind!r}.')
        by = _by(spec, f'Loss {name!r} schedule')
        fn, defaults = _KINDS[kind]
        unknown = set(spec) - set(defaults)
        if unknown:
            raise DistillerConfigError(
                f'Loss {name!r}: schedule {kind!r} takes '
                f'{sorted(defaults)} (and by), not '
                f'{sorted(unknown)}.')
        args = {**defaults, **spec}
        if kind == 'linear' and args['end'] is None:
            raise DistillerConfigError(
                f'Loss {name!r}: a linear schedule needs '
                f'end > begin.')
        if kind == 'step' and not args['milestones']:
            raise DistillerConfigError(f'Loss {name!r}: a step schedule needs '
                             f'milestones.')
        # Positions, factors and gamma alike: finite and >= 0.
        for arg, value in args.items():
            if arg == 'milestones':
                for i, milestone in enumerate(value):
                    check_number(f'{key}.milestones[{i}]', milestone, low=0)
            elif value is not None:
                check_number(f'{key}.{arg}', value, low=0)
        if args.get('end') is not None and args['end'] <= args['begin']:
            raise DistillerConfigError(
                f'{key}: needs end > begin, got begin={args["begin"]}, '
                f'end={args["end"]}.')
        return by, fn, args

    @property
    def constant(self) -> bool:
        return not self.parts

    def factor(self, progress: Progress) -> float:
        value = 1.0
        for by, fn, args in self.parts:
            value *= fn(progress.at(by), **args)
        return value


@dataclass(frozen=True)
class Stage:
    """One stretch of training (see the module docstring)."""
    end: Optional[int]
    distill: bool = True
    losses: Optional[Tuple[str, ...]] = None
    student_loss_weight: Optional[float] = None


class StagePlan:
    """Consecutive stages; one stage (distil everything) when none given.

    Args:
        stages (list[dict], optional): See the module docstring.
        loss_names (Sequence[str]): The configured terms, to check
            ``losses`` against.
    """

    def __init__(self, stages: Optional[Sequence[dict]],
                 loss_names: Sequence[str]):
        self.by = 'epoch'
        self.stages: List[Stage] = []
        specs = [dict(s) for s in stages or [{}]]
        bys = {s.pop('by') for s in specs if 'by' in s}
        if len(bys) > 1 or not bys <= set(_BY):
            raise DistillerConfigError(
                f'model.stages: all stages count in one unit, '
                f'"epoch" or "iter"; got {sorted(bys)}.')
        self.by = bys.pop() if bys else 'epoch'
        previous = None
        for i, spec in enumerate(specs):
            end = spec.pop('end', None)
            last = i == len(specs) - 1
            if (end is None) != last:
                raise DistillerConfigError(
                    'model.stages: every stage but the last '
                    'needs an "end"; the last has none.')
            if end is not None:
                check_number(f'model.stages[{i}].end', end, low=1,
                             integer=True)
            if end is not None and previous is not None and end <= previous:
                raise DistillerConfigError(
                    f'model.stages: ends must increase, got '
                    f'{end} after {previous}.')
            previous = end
            losses = spec.pop('losses', None)
            if losses is not None:
                unknown = sorted(set(losses) - set(loss_names))
                if unknown:
                    raise DistillerConfigError(
                        f'model.stages[{i}]: no loss {unknown}; '
                        f'losses: {sorted(loss_names)}.')
                losses = tuple(losses)
            if not isinstance(spec.get('distill', True), bool):
                raise DistillerConfigError(
                    f'model.stages[{i}].distill must be True or False, got '
                    f'{spec["distill"]!r}.')
            if spec.get('student_loss_weight') is not None:
                check_number(f'model.stages[{i}].student_loss_weight',
                             spec['student_loss_weight'], low=0)
            try:
                self.stages.append(Stage(end=end, losses=losses, **spec))
            except TypeError:
                raise DistillerConfigError(
                    f'model.stages[{i}] takes by, end, distill, losses, '
                    f'student_loss_weight; got {sorted(spec)}.') from None

    def index(self, progress: Progress) -> int:
        step = progress.at(self.by)
        for i, stage in enumerate(self.stages):
            if stage.end is None or step < stage.end:
                return i
        return len(self.stages) - 1

    def add_stop(self, stop_epoch: int,
                 student_loss_weight: Optional[float]) -> None:
        """No distillation from epoch ``stop_epoch`` on (what
        :class:`StopDistillHook` asks for); earlier stages keep their
        settings up to that epoch."""
        if self.by != 'epoch' and len(self.stages) > 1:
            raise DistillerConfigError(
                'StopDistillHook counts epochs but the stages '
                'count iterations; put the stop in the stages.')
        kept = [s for s in self.stages if s.end is not None and
                s.end < stop_epoch]
        current = self.stages[len(kept)]
        kept.append(Stage(end=stop_epoch, distill=current.distill,
                          losses=current.losses,
                          student_loss_weight=current.student_loss_weight))
        self.by = 'epoch'
        self.stages = kept + [
            Stage(end=None, distill=False,
                  student_loss_weight=student_loss_weight)
        ]



def needs_progress(plan: StagePlan, terms: Sequence) -> bool:
    """Whether the weights of ``terms`` depend on the training progress."""
    return len(plan.stages) > 1 or any(
        not t.schedule.constant or t.sources() & {'epoch', 'iter'}
        for t in terms)


def active_terms(plan: StagePlan, terms: Sequence,
                 progress: Progress) -> list:
    """``(term, factor)`` for each term the current stage runs with a
    non-zero factor."""
    stage = plan.stages[plan.index(progress)]
    if not stage.distill:
        return []
    active = []
    for term in terms:
        if stage.losses is not None and term.name not in stage.losses:
            continue
        factor = term.schedule.factor(progress)
        if factor != 0:
            active.append((term, factor))
    return active
