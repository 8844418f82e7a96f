"""The frozen teachers of a distiller: kept outside its module tree, in
eval mode, moved with it and shared by its copies."""
import copy
from typing import Callable, Dict, Iterator, Optional

import torch
import torch.nn as nn
from mmengine.logging import MMLogger

from cls_kd.errors import DistillerConfigError

from .build import build_teacher, expected_input_size, renormalisation
from .stored_outputs import teacher_digest

__all__ = ['TeacherSet', 'FrozenTeachersMixin']


class TeacherSet:
    """The frozen teachers of a distiller, kept outside its module tree.

    Not an ``nn.Module`` on purpose: the teachers are then in no state dict
    (checkpoints hold the student and connectors), optimizer, EMA copy or
    DDP wrapper, and ``train()`` never reaches them. The distiller forwards
    ``_apply`` (``.to()``/``.cuda()``) and shares them with its copies.

    :attr:`reports` tells, per teacher, where its weights came from (see
    :func:`build_teacher`).

    Args:
        specs (dict): ``name -> teacher spec`` (see :func:`build_teacher`).
        student_preprocessor (nn.Module): The student's data preprocessor;
            teacher inputs are re-normalised from it when theirs differs.
        reserved (set[str]): Names a teacher may not take (built-in sources
            and ``x`` for which ``logits_x`` is one).
    """

    def __init__(self, specs: Dict[str, dict], student_preprocessor,
                 reserved: set):
        self._models: Dict[str, nn.Module] = {}
        self._renorm: Dict[str, tuple] = {}
        self._checked_sizes = set()
        self._train_mode = set()
        self.reports: Dict[str, dict] = {}
        for name, spec in specs.items():
            clash = name in reserved or f'logits_{name}' in reserved
            if not name.isidentifier() or clash:
                raise DistillerConfigError(
                    f'Teacher name {name!r} is not allowed: it must be an '
                    f'identifier and neither it nor logits_{name} may be a '
                    f'built-in source ({sorted(reserved)}).')
            self._models[name], preprocessor = build_teacher(
                name, spec, self.reports.setdefault(name, {}))
            if spec.get('train_mode', False):
                self._train_mode.add(name)
                MMLogger.get_current_instance().warning(
                    f'Teacher {name!r} follows the train mode '
                    f'(train_mode=True): dropout, drop-path and BatchNorm '
                    f'statistics are active while training, as in the '
                    f'published code this reproduces.')
            renorm = renormalisation(student_preprocessor, preprocessor)
            if renorm is not None:
                self._renorm[name] = renorm

    def __getitem__(self, name: str) -> nn.Module:
        if name not in self._models:
            raise KeyError(f'No teacher {name!r}; teachers: '
                           f'{sorted(self._models)}.')
        return self._models[name]

    def __contains__(self, name) -> bool:
        return name in self._models

    def __iter__(self) -> Iterator[str]:
        return iter(self._models)

    def __len__(self) -> int:
        return len(self._models)

    def items(self):
        return self._models.items()

    def values(self):
        return self._models.values()

    @property
    def first(self) -> Optional[str]:
        """The teacher ``logits_t`` refers to."""
        return next(iter(self._models), None)

    def check_input(self, inputs: torch.Tensor) -> None:
        """Refuse a batch size a teacher's position embedding was not built
        for (checked once per size)."""
        size = tuple(inputs.shape[-2:])
        if size in self._checked_sizes:
            return
        for name, teacher in self._models.items():
            expected = expected_input_size(teacher)
            if expected is not None and expected != size:
                raise DistillerConfigError(
                    f'Teacher {name!r} was built for {expected[0]}x'
                    f'{expected[1]} images but the batch is {size[0]}x'
                    f'{size[1]}: its position embedding would be '
                    f'interpolated, silently lowering its accuracy. Make the '
                    f'student pipeline produce {expected[0]}x{expected[1]} '
                    f'or build the teacher for {size[0]}x{size[1]}.')
        self._checked_sizes.add(size)

    def inputs_for(self, name: str, inputs: torch.Tensor) -> torch.Tensor:
        """The student's (preprocessed) batch as teacher ``name`` expects
        it."""
        if name not in self._renorm:
            return inputs
        scale, shift, flip = self._renorm[name]
        if flip:
            inputs = inputs.flip(1)
        return torch.addcmul(
            shift.to(inputs.device, inputs.dtype), inputs,
            scale.to(inputs.device, inputs.dtype))

    def digest(self, name: str) -> str:
        """Teacher ``name``'s digest: architecture, weights and input
        re-normalisation (``stored_outputs.teacher_digest``), what stored
        outputs are checked against."""
        return teacher_digest(self[name],
                              lambda x: self.inputs_for(name, x))

    def eval(self) -> None:
        for teacher in self._models.values():
            teacher.eval()

    @property
    def train_mode(self) -> frozenset:
        """Names of the teachers built with ``train_mode=True``."""
        return frozenset(self._train_mode)

    def follow(self, mode: bool) -> None:
        """Eval mode, except for ``train_mode`` teachers: ``mode``."""
        for name, teacher in self._models.items():
            teacher.train(mode and name in self._train_mode)

    def apply(self, fn: Callable, *args, **kwargs) -> None:
        """What ``nn.Module._apply`` does to the distiller (``.to()``)."""
        for teacher in self._models.values():
            teacher._apply(fn, *args, **kwargs)
        self._renorm = {
            name: (fn(scale), fn(shift), flip)
            for name, (scale, shift, flip) in self._renorm.items()
        }

    def share_in(self, memo: dict) -> None:
        """Make ``copy.deepcopy`` with ``memo`` share the teachers."""
        for teacher in self._models.values():
            for obj in [teacher, *teacher.modules(), *teacher.parameters(),
                        *teacher.buffers()]:
                memo[id(obj)] = obj


class FrozenTeachersMixin:
    """What an ``nn.Module`` holding a :class:`TeacherSet` in ``teachers``
    (and its taps, installed by ``_install_taps`` / removed by
    ``remove_taps``) must do so the teachers stay frozen and shared: eval
    mode whatever ``train()`` is called with, moved by ``.to()``, shared
    (not copied) by ``copy.deepcopy`` (EMA copies)."""

    def train(self, mode: bool = True):
        super().train(mode)
        self.teachers.follow(mode)
        return self

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        self.teachers.apply(fn, *args, **kwargs)
        self._idle_params = None
        return self

    def __deepcopy__(self, memo):
        """Copies share the frozen teachers (e.g. EMA copies of the model);
        each copy puts its own hooks on its own student."""
        self.teachers.share_in(memo)
        self.remove_taps()
        try:
            new = copy._reconstruct(self, memo, *self.__reduce_ex__(4))
        finally:
            self._install_taps()
        new._install_taps()
        return new

    def __del__(self):
        # Teachers may outlive the distiller (they are shared with copies).
        try:
            self.remove_taps()
        except Exception:  # interpreter shutdown: nothing left to clean
            pass
