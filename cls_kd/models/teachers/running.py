"""Running the teachers of a training step: each teacher that an active
loss term reads, without autograd, stopped after its last tapped module
when its output is not read, or its stored outputs read instead."""
from functools import partial
from typing import Dict, Optional

import torch
import torch.nn as nn
from mmengine.model import BaseModel

from ..taps import TapSet
from .teacher_set import TeacherSet

__all__ = ['teacher_forward', 'compile_teacher', 'run_teacher',
           'run_teachers']


def teacher_forward(teacher: nn.Module, x: torch.Tensor):
    """A teacher's output: logits of an mmpretrain model, or whatever a
    bare module returns."""
    return teacher(x, mode='tensor') if isinstance(teacher,
                                                   BaseModel) else teacher(x)


def _teacher_taps_only(teacher: nn.Module, x: torch.Tensor) -> None:
    """Run a teacher for its taps only (compiled: the layers after the last
    tap are dead code)."""
    teacher_forward(teacher, x)


def compile_teacher(teacher: nn.Module, **kwargs) -> Dict[bool, object]:
    """``torch.compile`` a teacher's forward twice over: ``True`` returns
    its output, ``False`` nothing, so that a step that reads only its taps
    lets the compiler drop the layers after the last tap (the eager early
    stop raises an exception, which would break the graph)."""
    return {
        True: torch.compile(partial(teacher_forward, teacher), **kwargs),
        False: torch.compile(partial(_teacher_taps_only, teacher), **kwargs),
    }


def run_teacher(name: str, teacher: nn.Module, x: torch.Tensor, taps: TapSet,
                read_output: bool, record: bool = False,
                compiled: Optional[dict] = None) -> dict:
    """One teacher's captures of a step, plus ``logits_<name>`` when
    ``read_output``.

    Args:
        name (str): The teacher's name.
        teacher (nn.Module): The teacher.
        x (Tensor): Its input (already re-normalised for it).
        taps (TapSet): Its taps.
        read_output (bool): Whether its output is read; if not, the eager
            forward stops after the last tap that fired in the recorded run.
        record (bool): A recorded run (the dry run): the whole forward, with
            the firing order of the taps kept. Never compiled.
        compiled (dict, optional): :func:`compile_teacher` of it.
    """
    compiled = None if record else compiled
    if compiled is not None or read_output or record:
        taps.disarm()  # compiled: dead code elimination does the stopping
    else:
        taps.stop_after_last_fired()
    out = None
    with taps.recording(record=record) as captured, torch.no_grad():
        out = (compiled[read_output](x) if compiled is not None
               else teacher_forward(teacher, x))
    if read_output:
        captured[f'logits_{name}'] = out
    return captured


def run_teachers(teachers: TeacherSet, read: Dict[str, bool],
                 inputs: torch.Tensor, taps: Dict[str, TapSet],
                 stored: dict, compiled: dict, data_samples=None,
                 epoch: Optional[int] = None,
                 record: Optional[dict] = None) -> dict:
    """The teachers' values of a step: their captures, ``logits_<name>``
    and ``logits_t`` (the first teacher's).

    Args:
        teachers (TeacherSet): The teachers.
        read (dict): ``name -> whether its output is read`` of the teachers
            to run (the others are not).
        inputs (Tensor): The student's preprocessed batch.
        taps (dict): ``name -> TapSet`` of each teacher.
        stored (dict): ``name -> StoredOutputs`` of the teachers read from
            disk instead of run.
        compiled (dict): ``name -> compile_teacher(...)`` of compiled ones.
        data_samples (list, optional): The batch's samples (stored outputs
            are looked up by their replay keys).
        epoch (int, optional): The epoch training is in.
        record (dict, optional): The dry run: filled with each teacher's
            captures, run in full with the firing order of its taps kept.
    """
    values = {}
    if read:
        teachers.check_input(inputs)
    for name in teachers:
        if name not in read:
            continue
        if name in stored:
            captured = {f'logits_{name}': stored[name].logits(
                inputs, data_samples, epoch, dry=record is not None)}
        else:
            captured = run_teacher(name, teachers[name],
                                   teachers.inputs_for(name, inputs),
                                   taps[name], read[name], record is not None,
                                   compiled.get(name))
        if record is not None:
            record[name] = captured
        values.update(captured)
    if f'logits_{teachers.first}' in values:
        values['logits_t'] = values[f'logits_{teachers.first}']
    return values
