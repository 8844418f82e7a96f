"""The taps of a distiller, grouped by the model they capture from."""
import logging
from typing import Callable, Dict

import torch.nn as nn
from mmengine.logging import print_log

from cls_kd.errors import DistillerConfigError, describe

from ..taps import Tap, TapSet

__all__ = ['Captures']


class Captures:
    """Builds the taps of a distiller's config and keeps them per model.

    Args:
        taps (dict): ``name -> dict(model='student'|<teacher>, path=...,
            selector=..., capture=...)`` (see ``cls_kd.models.taps.Tap``).
        models (dict): ``'student'`` and each teacher, by name.
        reserved (set[str]): Names a tap may not take (built-in sources).

    After the build-time dry run, :attr:`shapes` holds what each tap
    captured (``name -> 'Tensor(2, 17, 64)'``), for the distiller summary.
    """

    def __init__(self, taps: Dict[str, dict], models: Dict[str, nn.Module],
                 reserved: set):
        per_model = {name: [] for name in models}
        for name, spec in taps.items():
            spec = dict(spec)
            owner = spec.pop('model', 'student')
            if name in reserved:
                raise DistillerConfigError(
                    f'Tap name {name!r} is reserved for a built-in source.')
            if owner not in models:
                teachers = sorted(set(models) - {'student'})
                raise DistillerConfigError(
                    f'Tap {name!r}: model {owner!r} is neither "student" nor '
                    f'a teacher ({teachers}).')
            if 'path' not in spec:
                raise DistillerConfigError(f'Tap {name!r} needs a path.')
            try:
                per_model[owner].append(
                    Tap(name, models[owner], owner, **spec))
            except (KeyError, TypeError, ValueError) as e:
                raise DistillerConfigError(
                    e.args[0] if e.args else str(e)) from None
        self.student = TapSet(per_model.pop('student'))
        self.teachers = {n: TapSet(t) for n, t in per_model.items()}
        self.owner = {
            tap.name: tap.owner
            for taps_ in [self.student, *self.teachers.values()]
            for tap in taps_
        }
        self.shapes: Dict[str, str] = {}

    def install(self) -> None:
        for taps in [self.student, *self.teachers.values()]:
            taps.install()

    def remove(self) -> None:
        for taps in [self.student, *self.teachers.values()]:
            taps.remove()

    def note_shapes(self, captured: Dict[str, object]) -> None:
        """Keep the shapes of captured tap values (from a dry run)."""
        self.shapes.update({
            name: describe(value)
            for name, value in captured.items() if name in self.owner
        })

    def record_student(self, forward: Callable[[], object]) -> None:
        """Run ``forward`` (a student forward) with the student's taps on and
        note the shapes they capture."""
        with self.student.recording() as captured:
            forward()
        self.note_shapes(captured)

    def teachers_read(self, sources: set, first_teacher) -> Dict[str, bool]:
        """``teacher -> whether its output (logits) is read`` for every
        teacher that ``sources`` need (its taps or its output)."""
        read = {}
        for name in sources:
            owner = self.owner.get(name)
            if owner is not None and owner != 'student':
                read.setdefault(owner, False)
            elif name == 'logits_t' and first_teacher is not None:
                read[first_teacher] = True
            elif name.startswith('logits_') and name[7:] in self.teachers:
                read[name[7:]] = True
        return read

    def warn_unread(self, terms) -> None:
        """Warn about taps that no loss term reads: they would be captured
        every step for nothing."""
        read = set().union(*(term.sources() for term in terms))
        unread = sorted(set(self.owner) - read)
        if unread:
            print_log(
                f'Taps {unread} are read by no loss: they are captured at '
                f'every step for nothing. Remove them from model.taps, or '
                f"read them in a loss's inputs.",
                logger='current',
                level=logging.WARNING)
