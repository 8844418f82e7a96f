"""Running part of a frozen teacher, with autograd, on student features:
:class:`TeacherPart` and the protocol giving connectors teacher access.
The per-family runners are in :mod:`.runners`.

Reference: Fan et al., "ScaleKD: Strong Vision Transformers Could Be
Excellent Teachers", NeurIPS 2024 (teacher parameter perception).
"""
from typing import Tuple, Union

import torch
import torch.nn as nn

from cls_kd.errors import DistillerConfigError
from cls_kd.registry import MODELS, TEACHER_RUNNERS

from .runners import TeacherRunner

__all__ = ['TeacherAccess', 'TeacherPart', 'bind_teacher_part']

HW = Tuple[int, int]


class _SharedRef:
    """A reference that ``copy.deepcopy`` shares instead of copying."""

    __slots__ = ('value', )

    def __init__(self, value):
        self.value = value

    def __deepcopy__(self, memo):
        return self


class TeacherAccess:
    """Mixin for connectors that run modules of a frozen teacher.

    The connector's ``__init__`` sets ``self.teacher_name`` (its ``teacher``
    argument). After building the connectors, the distiller calls
    ``connector.bind_teacher(teachers[connector.teacher_name])`` on each
    connector that is a ``TeacherAccess``. The teacher is kept outside the
    ``nn.Module`` tree: it is in no ``parameters()``, ``state_dict()``,
    ``train()`` or ``to()`` of the connector, and ``copy.deepcopy`` (EMA)
    shares it.
    """

    teacher_name: str

    def bind_teacher(self, teacher: nn.Module) -> None:
        """Gives the connector its teacher (again after a teacher swap)."""
        if not isinstance(teacher, nn.Module):
            raise TypeError(f'{type(self).__name__}.bind_teacher expects a '
                            f'nn.Module, got {type(teacher).__name__}.')
        self.resolve_teacher(teacher)
        # Straight into __dict__: nn.Module.__setattr__ registers modules.
        self.__dict__['_teacher_ref'] = _SharedRef(teacher)

    @property
    def teacher(self) -> nn.Module:
        """The bound teacher; RuntimeError before ``bind_teacher``."""
        return self._bound_teacher()

    def _bound_teacher(self) -> nn.Module:
        ref = self.__dict__.get('_teacher_ref')
        if ref is None:
            raise RuntimeError(
                f'{type(self).__name__}: teacher '
                f'{getattr(self, "teacher_name", None)!r} is not bound. The '
                f'distiller calls bind_teacher(model) after building the '
                f'connectors; call it yourself when using it standalone.')
        return ref.value

    def resolve_teacher(self, teacher: nn.Module) -> None:
        """Finds the teacher modules the connector runs; an error here leaves
        the connector unbound. Subclasses override it."""


@MODELS.register_module()
class TeacherPart(TeacherAccess, nn.Module):
    """Runs part of a frozen teacher *with* autograd on student features.

    Gradients reach the (student-derived) input; the teacher's parameters,
    frozen by the distiller, get none, and the teacher stays in eval mode
    and outside this connector's parameters and state dict (see
    :class:`TeacherAccess`).

    Args:
        runner (dict | TeacherRunner): The runner, e.g.
            ``dict(type='ViTBlocksRunner', start=-2)`` or
            ``dict(type='SwinStageRunner', stage=3)`` (``TEACHER_RUNNERS``).
        teacher (str): Name of the teacher to run. Defaults to
            ``'teacher'``.
    """

    def __init__(self, runner: Union[dict, TeacherRunner],
                 teacher: str = 'teacher'):
        super().__init__()
        self.teacher_name = teacher
        if isinstance(runner, dict):
            runner = dict(runner)
            kind = runner.pop('type', None)
            cls = kind if isinstance(kind, type) else (
                TEACHER_RUNNERS.get(kind) if kind else None)
            if cls is None:
                known = sorted(TEACHER_RUNNERS.module_dict)
                raise KeyError(f'TeacherPart: unknown runner type {kind!r}; '
                               f'known: {known}.')
            runner = cls(**runner)
        if not isinstance(runner, TeacherRunner):
            raise TypeError(f'TeacherPart: runner must be a config dict or a '
                            f'TeacherRunner, got {type(runner).__name__}.')
        self.runner = runner

    def resolve_teacher(self, teacher: nn.Module) -> None:
        self.runner.bind(teacher)

    def forward(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        """Runs the teacher part on ``x`` (shapes: see the runner)."""
        self._bound_teacher()  # the unbound error names bind_teacher
        with torch.enable_grad():
            return self.runner(x, **kwargs)

    def extra_repr(self) -> str:
        return f'teacher={self.teacher_name!r}, runner={self.runner!r}'


def bind_teacher_part(name: str, connector: nn.Module, teachers) -> None:
    """Bind connector ``name`` to its teacher if it runs part of one
    (:class:`TeacherAccess`); an unknown teacher or a part it cannot find
    is a :class:`DistillerConfigError` naming the connector."""
    if not isinstance(connector, TeacherAccess):
        return
    if connector.teacher_name not in teachers:
        raise DistillerConfigError(
            f'Connector {name!r} runs teacher {connector.teacher_name!r}; '
            f'teachers: {sorted(teachers)}.')
    try:
        connector.bind_teacher(teachers[connector.teacher_name])
    except (KeyError, TypeError, ValueError) as e:
        raise DistillerConfigError(f'Connector {name!r}: {e}') from None
