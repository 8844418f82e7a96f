"""``torch.compile`` of what a distiller's training step runs."""
from typing import List

from cls_kd.utils.compile import compile_classifier_parts

from ..teachers import compile_teacher

__all__ = ['compile_parts']


def compile_parts(distiller, **kwargs) -> List[str]:
    """``torch.compile`` what a training step runs, in place.

    Compiled: the student's backbone, neck and head (or the student
    itself if it has none of them), every connector and loss module
    (:meth:`torch.nn.Module.compile`: names and state dicts unchanged),
    and each teacher's forward twice over, once returning its output
    and once returning nothing, so that a step that reads only a
    teacher's taps lets the compiler drop the layers after its last tap
    (the eager early stop raises :class:`StopForward`, which would break
    the graph). Taps stay forward hooks: they are traced into the
    graphs. Teachers run under ``no_grad`` and the step's autocast, as
    in eager mode. The supervised loss, the wiring and the optimizer
    stay eager.

    Args:
        distiller (BaseDistiller): The distiller; its teachers' compiled
            forwards go to ``distiller._compiled_teachers``.
        **kwargs: Options of :func:`torch.compile` (e.g. ``mode``).

    Returns:
        list[str]: Names of the compiled parts.
    """
    names = [
        f'student.{name}'
        for name in compile_classifier_parts(distiller.student, **kwargs)
    ]
    if not names:  # a bare backbone
        distiller.student.compile(**kwargs)
        names.append('student')
    for name, module in [
        *((f'connectors.{n}', m) for n, m in distiller.connectors.items()),
        *((f'losses.{n}', m) for n, m in distiller.losses.items()),
    ]:
        module.compile(**kwargs)
        names.append(name)
    for name, teacher in distiller.teachers.items():
        distiller._compiled_teachers[name] = compile_teacher(teacher, **kwargs)
        names.append(f'teachers[{name!r}]')
    return names
