"""The base distiller: a student, frozen teachers, taps, connectors and
loss terms, with schedules and a build-time dry run. Task-specific
distillers (classification, label-free, your own) are thin subclasses."""
import copy
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModel

from cls_kd.errors import DistillerConfigError
from cls_kd.registry import MODELS
from cls_kd.utils import cast_numpy_scalars, load_plain_student_hook

from ..teachers import (
    FrozenTeachersMixin,
    TeacherSet,
    bind_teacher_part,
    resolve_input_size,
    run_teacher,
    run_teachers,
    stored_teacher_outputs,
)
from .captures import Captures
from .compiling import compile_parts
from .connector_widths import require_written_widths, settling_widths
from .dry_run import dry_run
from .schedule import Progress, StagePlan, active_terms, needs_progress
from .summary import log_distiller_summary
from .wiring import LossWiring, idle_term

__all__ = ['BaseDistiller']


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
            inputs and shapes fail before training, and connector widths
            left out are measured. Defaults to True.
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
        # A plain attribute: not registered as submodules on purpose.
        self.__dict__['teachers'] = TeacherSet(specs, self.data_preprocessor,
                                               self.reserved_names())
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
        self.captures.warn_unread(self.wiring.terms)
        self.stage_plan = StagePlan(stages, self.wiring.names)
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
            # Connector widths left out are measured (and written ones
            # checked) by the dry run: connectors.widths.
            with settling_widths(self.wiring):
                self._dry_run()
        else:
            require_written_widths(self.connectors, 'dry_run=False')
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
        bind_teacher_part(name, connector, self.teachers)
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
        """``torch.compile`` what a training step runs, in place; the names
        of the compiled parts (see :func:`.compiling.compile_parts`)."""
        return compile_parts(self, **kwargs)

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
        """Teacher ``name``'s captures (and output) on the student's batch
        (see :func:`cls_kd.models.teachers.run_teacher`)."""
        return run_teacher(name, self.teachers[name],
                           self.teachers.inputs_for(name, inputs),
                           self.captures.teachers[name], read_output, record,
                           self._compiled_teachers.get(name))

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
        epoch = self.progress.epoch if self.progress is not None else None
        values = run_teachers(
            self.teachers, self.teachers_to_run(active), inputs,
            self.captures.teachers, self.stored, self._compiled_teachers,
            data_samples, epoch, record)
        with self.captures.student.recording() as student_values:
            outputs = self.forward_student(inputs)
        losses = self.supervised_losses(outputs, data_samples,
                                        self.current_stage())
        values.update(student_values)
        values.update(outputs)
        self._step_terms = active
        if active:
            losses.update(self.distill_losses(values, data_samples))
        if len(active) < len(self.wiring.terms):
            if self._idle_params is None:
                self._idle_params = [
                    p for p in [*self.connectors.parameters(),
                                *self.losses.parameters()] if p.requires_grad
                ]
            idle = idle_term(self._idle_params, student_values)
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
        """One dummy batch through every loss term at build time (see
        :func:`.dry_run.dry_run`)."""
        dry_run(self)
