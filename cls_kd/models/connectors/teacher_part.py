"""Running part of a frozen teacher on student-derived features."""
from typing import Sequence, Union

import torch
import torch.nn as nn

from cls_kd.registry import MODELS

from ..taps import get_submodule

__all__ = ['TeacherPart']


@MODELS.register_module()
class TeacherPart(nn.Module):
    """Runs a chain of a frozen teacher's modules *with* autograd.

    Gradients flow through the teacher modules to the (student-derived)
    input while the teacher's own parameters stay frozen, in eval mode and
    outside this connector's parameters and state dict. This is ScaleKD's
    teacher parameter perception: projected student features go through the
    teacher's last stage.

    Args:
        paths (str | Sequence[str]): Dotted paths of the teacher modules to
            run in order, e.g. ``['backbone.layers.10', 'backbone.layers.11',
            'backbone.ln1']``.
        teacher (str): Name of the teacher. Defaults to ``'teacher'``.
        teachers: Injected by the distiller (read-only teacher access).
    """

    def __init__(self,
                 paths: Union[str, Sequence[str]],
                 teacher: str = 'teacher',
                 teachers=None):
        super().__init__()
        if teachers is None:
            raise ValueError('TeacherPart is built by a distiller, which '
                             'passes the teachers.')
        paths = [paths] if isinstance(paths, str) else list(paths)
        model = teachers[teacher]
        # A tuple is not registered by nn.Module: the teacher stays outside
        # this connector's parameters, state dict and optimizer.
        self._parts = tuple(
            get_submodule(model, p, f'TeacherPart of {teacher!r}')
            for p in paths)
        self.paths = paths

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            for module in self._parts:
                x = module(x)
        return x
