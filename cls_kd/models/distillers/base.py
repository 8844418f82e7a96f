"""The base distiller: a student, frozen teachers, taps, connectors and
loss terms, with schedules and a build-time dry run. Task-specific
distillers (classification, label-free, your own) are thin subclasses."""
import copy
import logging
from functools import partial
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model import BaseModel

from cls_kd.registry import MODELS
from cls_kd.utils import cast_numpy_scalars, load_plain_student_hook
from cls_kd.utils.compile import compile_classifier_parts

from ..connectors.teacher_part import TeacherAccess
from ..taps import StopForward
from .captures import Captures
from .errors import DistillerConfigError, message_with_notes
from .schedule import Progress, StagePlan, active_terms, needs_progress
from .stored_outputs import stored_teacher_outputs
from .summary import log_distiller_summary
from .teacher import FrozenTeachersMixin, TeacherSet, resolve_input_size
from .wiring import LossWiring, touch

__all__ = ['BaseDistiller', 'teacher_forward']


def teacher_forward(teacher: nn.Module, x: torch.Tensor):
    """A teacher's output: logits of an mmpretrain model, or whatever a
    bare module returns."""
    return teacher(x, mode='tensor') if isinstance(teacher,
                                                   BaseModel) else teacher(x)


def _teacher_taps_only(teacher: nn.Module, x: torch.Tensor) -> None:
    """Run a teacher for its taps only (compiled: the layers after the last
    tap are dead code)."""
    teacher_forward(teacher, x)


def _warn_unread_taps(taps: Dict[str, str], terms) -> None:
    """Warn about taps that no loss input reads: they would be captured
    every step for nothing."""
    read = set().union(*(term.sources() for term in terms))
    unread = sorted(set(taps) - read)
    if unread:
        print_log(
            f'Taps {unread} are read by no loss: they are captured at every '
            f'step for nothing. Remove them from model.taps, or read them in '
            f"a loss's inputs.",
            logger='current',
            level=logging.WARNING)


class BaseDistiller(FrozenTeachersMixin, BaseModel):
    """Distils frozen teachers into a student; subclasses say what the
    student is and which supervised loss it has.

    One training step runs each teacher that an active loss term reads
    (no autograd, eval mode, under the student's autocast; stopped after its
    last tapped module when its output is not needed), runs the student
    once, and returns the subclass's supervised losses plus one entry per
    active term. Teachers stay outside the module tree (see
    :class:`TeacherSet`).

    Subclasses implement :meth:`build_student`, :meth:`forward_student`,
    :meth:`supervised_losses` and :meth:`dummy_batch`, and may add sources
    (:attr:`extra_sources`, :meth:`extra_source`).

    Args:
        student (dict): The student's config.
        teacher (dict, optional): One teacher spec (:func:`build_teacher`).
        teachers (dict, optional): Several, ``name -> spec``.
        taps (dict): ``name -> dict(model='student'|<teacher>, path=<dotted
            path | list | dict(pattern=..., type=...)>, selector=...,
            capture='output'|'input')``.
        connectors (dict): ``name -> connector config`` (trained with the
            student, saved with it, dropped on export).
        losses (dict): ``name -> loss config`` plus ``inputs`` (each
            ``forward`` argument -> an expression or a list of them) and
            optional ``warmup`` / ``schedule`` (:mod:`.schedule`).
        stages (list[dict], optional): Stages of training (:mod:`.schedule`).
        input_size (int | tuple, optional): Image size of the dry run and
            the teacher size check. Defaults to the student's patch
            embedding size, else a teacher's, else 224.
        dry_run (bool): Run a dummy batch at build time so that wrong paths,
            inputs and shapes fail before training. Defaults to True.
        data_preprocessor (dict, optional): The student's preprocessor when
            its config has none (the Runner passes the top-level one).
        init_cfg (dict, optional): Unused, for mmengine compatibility.
    """

    #: Sources every distiller provides besides taps and teacher outputs.
    extra_sources: Tuple[str, ...] = ()

    def __init__(self,
                 student: dict,
                 teacher: Optional[dict] = None,
                 teachers: Optional[Dict[str, dict]] = None,
                 taps: Optional[Dict[str, dict]] = None,
                 connectors: Optional[Dict[str, dict]] = None,
                 losses: Optional[Dict[str, dict]] = None,
                 stages: Optional[Sequence[dict]] = None,
                 input_size: Optional[Union[int, Tuple[int, int]]] = None,
                 dry_run: bool = True,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        model, preprocessor = self.build_student(
            copy.deepcopy(dict(student)), copy.deepcopy(data_preprocessor))
        super().__init__(data_preprocessor=preprocessor, init_cfg=init_cfg)
        if hasattr(self.data_preprocessor, '_non_blocking'):
            # mmpretrain's preprocessors keep mmengine's blocking copies: one
            # wait for the GPU per image and label of every batch.
            self.data_preprocessor._non_blocking = True
        self.student = model
        cast_numpy_scalars(self.student)
        self.register_load_state_dict_pre_hook(load_plain_student_hook)
        if teacher is not None and teachers is not None:
            raise DistillerConfigError('Give either teacher or teachers.')
        specs = dict(teacher=teacher) if teacher is not None else dict(
            teachers or {})
        try:
            # A plain attribute: not registered as submodules on purpose.
            self.__dict__['teachers'] = TeacherSet(
                specs, self.data_preprocessor, self.reserved_names())
        except ValueError as e:
            raise DistillerConfigError(str(e)) from None
        models = {'student': self.student, **dict(self.teachers.items())}
        self.captures = Captures(
            taps or {}, models,
            self.reserved_names() | {f'logits_{t}' for t in self.teachers})
        self.connectors = nn.ModuleDict({
            name: self._build_connector(name, dict(cfg))
            for name, cfg in (connectors or {}).items()
        })
        self.__dict__['wiring'] = LossWiring(losses, self._sources(),
                                             self.connectors, MODELS.build)
        self.losses = nn.ModuleDict(self.wiring.modules())
        # Teachers whose outputs are read from disk instead of run.
        self.__dict__['stored'] = stored_teacher_outputs(
            specs, self.teachers, self.captures, self.wiring.terms,
            self.connectors)
        _warn_unread_taps(self.captures.owner, self.wiring.terms)
        try:
            self.stage_plan = StagePlan(stages, self.wiring.names)
        except ValueError as e:
            raise DistillerConfigError(str(e)) from None
        self._term_teachers = {
            term.name: self.captures.teachers_read(term.sources(),
                                                   self.teachers.first)
            for term in self.wiring.terms
        }
        self.progress: Optional[Progress] = None
        self._step_terms = []
        self._idle_params = None
        self._compiled_teachers: Dict[str, dict] = {}
        self.input_size = resolve_input_size(
            input_size, [self.student, *self.teachers.values()])
        self._install_taps()
        if dry_run:
            self._dry_run()
        log_distiller_summary(self)

    # ------------------------------------------------- subclass interface
    def build_student(self, cfg: dict, data_preprocessor: Optional[dict]):
        """Build the student; return it and its data preprocessor (module
        or config)."""
        raise NotImplementedError

    def forward_student(self, inputs: torch.Tensor) -> dict:
        """Run the student; return its named outputs (e.g. ``logits_s``)."""
        raise NotImplementedError

    def supervised_losses(self, outputs: dict, data_samples,
                          stage) -> Dict[str, torch.Tensor]:
        """The student's own losses of this step (may be empty)."""
        raise NotImplementedError

    def dummy_batch(self) -> tuple:
        """``(inputs, data_samples)`` for the build-time dry run."""
        raise NotImplementedError

    def extra_source(self, name: str, values: dict, data_samples):
        """Value of one of :attr:`extra_sources` not in ``values``."""
        raise KeyError(name)

    def reserved_names(self) -> set:
        """Names no tap or teacher may take."""
        return {'student', 'epoch', 'iter', 'logits_t',
                *self.extra_sources}

    # -------------------------------------------------------------- build
    def _build_connector(self, name: str, cfg: dict) -> nn.Module:
        connector = MODELS.build(cfg)
        if isinstance(connector, TeacherAccess):
            if connector.teacher_name not in self.teachers:
                raise DistillerConfigError(
                    f'Connector {name!r} runs teacher '
                    f'{connector.teacher_name!r}; teachers: '
                    f'{sorted(self.teachers)}.')
            try:
                connector.bind_teacher(self.teachers[connector.teacher_name])
            except (KeyError, TypeError, ValueError) as e:
                raise DistillerConfigError(
                    f'Connector {name!r}: {e}') from None
        return connector

    def _sources(self) -> set:
        sources = {'epoch', 'iter', *self.extra_sources, *self.captures.owner}
        sources |= {f'logits_{t}' for t in self.teachers}
        if len(self.teachers):
            sources.add('logits_t')
        return sources

    def _install_taps(self):
        self.captures.install()

    def remove_taps(self):
        """Remove every forward hook this distiller put on its models."""
        self.captures.remove()

    # ------------------------------------------------------------ compile
    def compile_parts(self, **kwargs) -> List[str]:
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
            **kwargs: Options of :func:`torch.compile` (e.g. ``mode``).

        Returns:
            list[str]: Names of the compiled parts.
        """
        names = [
            f'student.{name}'
            for name in compile_classifier_parts(self.student, **kwargs)
        ]
        if not names:  # a bare backbone
            self.student.compile(**kwargs)
            names.append('student')
        for name, module in [
            *((f'connectors.{n}', m) for n, m in self.connectors.items()),
            *((f'losses.{n}', m) for n, m in self.losses.items()),
        ]:
            module.compile(**kwargs)
            names.append(name)
        for name, teacher in self.teachers.items():
            self._compiled_teachers[name] = {
                True: torch.compile(partial(teacher_forward, teacher),
                                    **kwargs),
                False: torch.compile(partial(_teacher_taps_only, teacher),
                                     **kwargs),
            }
            names.append(f'teachers[{name!r}]')
        return names

    # ----------------------------------------------------------- schedule
    def set_progress(self, epoch: int, iter: int) -> None:
        """Called by :class:`DistillScheduleHook` before every training
        step; decides the stage and the terms' weights."""
        self.progress = Progress(int(epoch), int(iter))

    def current_stage(self):
        return self.stage_plan.stages[self.stage_plan.index(
            self.progress or Progress())]

    @property
    def distill_enabled(self) -> bool:
        """Whether the current stage distils at all."""
        return self.current_stage().distill

    def active_terms(self, everything: bool = False) -> list:
        """``(term, factor)`` of the terms this step computes (all of them
        with factor 1 when ``everything``)."""
        if everything:
            return [(term, 1.0) for term in self.wiring.terms]
        if self.progress is None and self.training and needs_progress(
                self.stage_plan, self.wiring.terms):
            raise RuntimeError(
                'This distiller has schedules or stages (or reads '
                'epoch/iter) but was never told the training progress: add '
                "custom_hooks=[dict(type='DistillScheduleHook')] to the "
                'config (tools/train.py adds it by itself).')
        return active_terms(self.stage_plan, self.wiring.terms,
                            self.progress or Progress())

    # ------------------------------------------------------------ running
    def _run_teacher(self, name: str, inputs: torch.Tensor,
                     read_output: bool, record: bool = False) -> dict:
        taps = self.captures.teachers[name]
        teacher = self.teachers[name]
        x = self.teachers.inputs_for(name, inputs)
        compiled = None if record else self._compiled_teachers.get(name)
        if compiled is not None:
            # The compiled forward that returns nothing lets the compiler
            # drop what comes after the last tap: no StopForward needed.
            taps.disarm()
        elif not record:
            # Stop after the last tap (order recorded by the dry run) when
            # no active term reads the teacher's output.
            (taps.disarm if read_output else taps.stop_after_last_fired)()
        out = None
        taps.enable(record=record)
        try:
            with torch.no_grad():
                out = (compiled[read_output](x) if compiled is not None
                       else teacher_forward(teacher, x))
        except StopForward:
            pass
        finally:
            captured = taps.collect()
        if read_output:
            captured[f'logits_{name}'] = out
        return captured

    def _stored_logits(self, name: str, inputs: torch.Tensor, data_samples,
                       dry: bool) -> torch.Tensor:
        """Teacher ``name``'s stored logits of this batch (zeros in the
        dry run, whose samples are no seeded views)."""
        store = self.stored[name]
        if dry:
            return inputs.new_zeros(len(inputs), store.num_classes)
        epoch = self.progress.epoch if self.progress is not None else None
        return store.read(data_samples, inputs.device, epoch)

    def check_stored_outputs(self, facts: dict, epochs=()) -> None:
        """Refuse stored teacher outputs dumped for other views or batches
        (called by ``SeededAugmentHook`` before training; see
        :meth:`StoredOutputs.check_run`)."""
        for store in self.stored.values():
            store.check_run(facts, epochs)

    def teachers_to_run(self, active: list) -> Dict[str, bool]:
        """``teacher -> whether its output is read`` for the teachers the
        ``active`` terms need; the others are not run."""
        read: Dict[str, bool] = {}
        for term, _ in active:
            for name, output in self._term_teachers[term.name].items():
                read[name] = read.get(name, False) or output
        return read

    def _source(self, name: str, values: dict, data_samples):
        if name in values:
            return values[name]
        if name in ('epoch', 'iter'):
            return (self.progress or Progress()).at(name)
        if name in self.extra_sources:
            return self.extra_source(name, values, data_samples)
        raise KeyError(f'Source {name!r} was not produced in this step '
                       f'(is its tap\'s module run by the forward?).')

    def _idle_term(self, student_values: dict) -> torch.Tensor:
        """Zero touching every connector/loss parameter and student tap, so
        that DDP sees all of them used while some terms are off."""
        if self._idle_params is None:
            self._idle_params = [
                p for p in [*self.connectors.parameters(),
                            *self.losses.parameters()] if p.requires_grad
            ]
        terms = [
            v.sum() * 0.0 for value in student_values.values()
            for v in (value if isinstance(value, list) else [value])
            if torch.is_tensor(v) and v.requires_grad
        ]
        if self._idle_params:
            terms.append(touch(self._idle_params))
        return sum(terms) if terms else None

    def loss(self, inputs: torch.Tensor, data_samples) -> dict:
        """Teacher(s) and student forward, then the active loss terms.

        Args:
            inputs (Tensor): Preprocessed (and batch-augmented) images,
                (B, 3, H, W).
            data_samples (list[DataSample] | None): The batch's samples.

        Returns:
            dict[str, Tensor]: The supervised losses and one entry per
            active term (terms that are off are absent).
        """
        return self._loss(inputs, data_samples, self.active_terms())

    def _loss(self, inputs, data_samples, active: list,
              record: Optional[dict] = None) -> dict:
        """``record`` (dry run): filled with each run teacher's captures,
        run in full with the firing order of its taps recorded."""
        read = self.teachers_to_run(active)
        values = {}
        if read:
            try:
                self.teachers.check_input(inputs)
            except ValueError as e:
                raise DistillerConfigError(str(e)) from None
        for name in self.teachers:
            if name in read:
                if name in self.stored:
                    captured = {f'logits_{name}': self._stored_logits(
                        name, inputs, data_samples, record is not None)}
                else:
                    captured = self._run_teacher(name, inputs, read[name],
                                                 record=record is not None)
                if record is not None:
                    record[name] = captured
                values.update(captured)
        if f'logits_{self.teachers.first}' in values:
            values['logits_t'] = values[f'logits_{self.teachers.first}']
        self.captures.student.enable()
        try:
            outputs = self.forward_student(inputs)
        finally:
            student_values = self.captures.student.collect()
        losses = self.supervised_losses(outputs, data_samples,
                                        self.current_stage())
        values.update(student_values)
        values.update(outputs)
        self._step_terms = active
        if active:
            losses.update(self.distill_losses(values, data_samples))
        if len(active) < len(self.wiring.terms):
            idle = self._idle_term(student_values)
            if idle is not None:
                first = next(iter(losses), 'loss_idle')
                losses[first] = losses[first] + idle if first in losses \
                    else idle
        return losses

    def distill_losses(self, values: dict, data_samples) -> dict:
        """The active loss terms of this step, weighted and scheduled; the
        extension point for distillers that add terms of their own (called
        only while some term is active).

        Args:
            values (dict): Tap captures, the student's outputs (e.g.
                ``logits_s``) and the teachers' outputs of this step.
            data_samples (list[DataSample]): The batch's samples.
        """
        return self.wiring.evaluate(
            self._step_terms, lambda n: self._source(n, values, data_samples))

    # ------------------------------------------------------------ dry run
    def _dry_run(self):
        """One dummy batch through every loss term: wrong tap paths and
        selectors, loss inputs and shapes become a
        :class:`DistillerConfigError` now. Also records the order in which
        teacher taps fire, so that a teacher whose output no term reads
        stops after its last tapped module, and the shapes every tap
        captures (for the summary)."""
        inputs, data_samples = self.dummy_batch()
        modes = {m: m.training for m in self.modules()}
        self.eval()
        try:
            with torch.no_grad():
                recorded = {}
                self._loss(inputs, data_samples, self.active_terms(True),
                           recorded)
                for name in self.teachers:  # one pass per teacher
                    self.captures.note_shapes(recorded.get(name) or (
                        self._run_teacher(name, inputs, False, record=True)))
                self.captures.record_student(
                    lambda: self.forward_student(inputs))
        except Exception as e:
            if isinstance(e, torch.OutOfMemoryError):
                raise
            prefix = 'Dry run of the distiller at build time'
            if not isinstance(e, DistillerConfigError):
                prefix += (f' failed on a {self.input_size[0]}x'
                           f'{self.input_size[1]} batch (set input_size if '
                           f'that is not the training size)')
            raise DistillerConfigError(
                f'{prefix}: {message_with_notes(e)}') from e
        finally:
            for module, training in modes.items():
                module.training = training
        for name, taps in self.captures.teachers.items():
            if taps.unfired():
                raise DistillerConfigError(
                    f'Teacher {name!r}: taps {taps.unfired()} never fired in '
                    f'a forward pass (is the module used?).')
