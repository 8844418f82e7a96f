"""The classification distiller: student + frozen teachers + taps +
connectors + losses, all built from a config."""
import copy
import inspect
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import MessageHub
from mmengine.model import BaseModel
from mmpretrain.structures import DataSample

from cls_kd.registry import MODELS
from cls_kd.utils import cast_numpy_scalars

from ..taps import StopForward, Tap, TapSet
from .expressions import Call, Expression, Source, parse_expression, walk
from .teacher import build_teacher, expected_input_size, renormalisation

__all__ = ['ClassificationDistiller', 'DistillerConfigError']


class DistillerConfigError(ValueError):
    """A distiller config that cannot work: bad tap path, missing loss
    input, mismatched shapes. Raised when the model is built."""


# Sources every distiller provides besides taps and teachers' logits.
_BUILTIN_SOURCES = ('logits_s', 'labels', 'soft_labels', 'epoch', 'iter')
_ERRORS_TO_EXPLAIN = (ValueError, TypeError, RuntimeError, IndexError,
                      KeyError, AssertionError)


@dataclass
class _LossTerm:
    name: str
    module: nn.Module
    # One expression per forward argument, or a tuple of them (a list).
    inputs: Dict[str, Union[Expression, Tuple[Expression, ...]]]
    warmup: Optional[Tuple[str, int]]


def _describe(value) -> str:
    if torch.is_tensor(value):
        return f'Tensor{tuple(value.shape)}'
    if isinstance(value, dict):
        return '{' + ', '.join(f'{k}: {_describe(v)}'
                               for k, v in value.items()) + '}'
    if isinstance(value, (tuple, list)):
        return f'{type(value).__name__}[' + ', '.join(
            _describe(v) for v in value) + ']'
    return repr(value)


def _walk_input(value) -> list:
    """Every (sub-)expression of a loss input (one or a tuple of them)."""
    exprs = value if isinstance(value, tuple) else (value, )
    return [node for expr in exprs for node in walk(expr)]


def _input_text(value) -> str:
    if isinstance(value, tuple):
        return '[' + ', '.join(map(str, value)) + ']'
    return str(value)


class _TeacherView:
    """Read-only access to the teachers for connectors that run teacher
    parts (e.g. ScaleKD's teacher parameter perception). Deliberately not an
    ``nn.Module``, so a connector holding it does not register the teacher
    as its submodule."""

    def __init__(self, teachers: Dict[str, nn.Module]):
        self._teachers = teachers

    def __getitem__(self, name: str) -> nn.Module:
        if name not in self._teachers:
            raise KeyError(f'No teacher {name!r}; teachers: '
                           f'{sorted(self._teachers)}.')
        return self._teachers[name]


@MODELS.register_module()
class ClassificationDistiller(BaseModel):
    """Distils frozen teachers into an mmpretrain classifier.

    One training step runs each teacher once (no autograd, eval mode, under
    the same autocast as the student; stopped after its last tapped module
    when its logits are not needed), runs the student once, and returns the
    student's supervised loss (``loss_cls``) plus one entry per configured
    loss. Prediction is the student's.

    Teachers are kept out of the module tree: they are not in the state dict
    (checkpoints hold student + connectors), the optimizer, EMA copies or
    DDP, and ``train()`` never reaches them. They follow ``.to()``/``.cuda()``.

    Args:
        student (dict): Config of an mmpretrain classifier (e.g.
            ``ImageClassifier``) whose head has ``_get_loss``. Its data
            preprocessor and batch augments (Mixup/CutMix) are the
            distiller's, applied once per batch.
        teacher (dict, optional): One teacher, named ``'teacher'``:
            ``dict(config=<model dict | config path>, checkpoint=<path|URL>,
            data_preprocessor=<mean/std/to_rgb, optional>)``.
        teachers (dict, optional): Several teachers, ``name -> spec``.
        taps (dict): ``name -> dict(model='student'|<teacher>, path=<dotted
            module path>, selector=<name|dict>, capture='output'|'input')``.
        connectors (dict): ``name -> connector config`` (trainable, saved
            with the student, dropped on export).
        losses (dict): ``name -> loss config`` with two extra keys:
            ``inputs`` mapping each argument of the loss's ``forward`` to an
            expression (a tap, ``logits_s``, ``logits_t``, ``logits_<teacher
            name>``, ``labels`` (hard, arg-max of soft labels),
            ``soft_labels``, ``epoch``, ``iter``, or ``connector(expr, ...)
            [.key]``), or to a list of expressions (the loss gets a list,
            e.g. one entry per distilled block), and optional
            ``warmup=dict(by='epoch'|'iter',
            length=N)`` ramping the weight linearly to 1 over N steps. Names
            must start with ``loss``.
        student_loss_weight (float): Weight of the student's own loss
            (``1 - alpha`` of Hinton KD); :class:`StopDistillHook` resets it
            when distillation stops. Defaults to 1.0.
        input_size (int | tuple, optional): Image size for the build-time dry
            run and the teacher size check. Defaults to the student's patch
            embedding size, else a teacher's, else 224.
        dry_run (bool): Run a dummy batch at build time so that wrong paths,
            inputs and shapes fail before training. Defaults to True.
        data_preprocessor (dict, optional): Used as the student's when its
            config has none (the Runner passes the config's top-level one).
        init_cfg (dict, optional): Unused, for mmengine compatibility.
    """

    def __init__(self,
                 student: dict,
                 teacher: Optional[dict] = None,
                 teachers: Optional[Dict[str, dict]] = None,
                 taps: Optional[Dict[str, dict]] = None,
                 connectors: Optional[Dict[str, dict]] = None,
                 losses: Optional[Dict[str, dict]] = None,
                 student_loss_weight: float = 1.0,
                 input_size: Optional[Union[int, Tuple[int, int]]] = None,
                 dry_run: bool = True,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        student = copy.deepcopy(dict(student))
        if data_preprocessor is not None:
            # A copy: mmpretrain's ImageClassifier writes its batch augments
            # into the dict it gets, which would leak into later builds.
            student.setdefault('data_preprocessor',
                               copy.deepcopy(data_preprocessor))
        student_model = MODELS.build(student)
        super().__init__(
            data_preprocessor=student_model.data_preprocessor,
            init_cfg=init_cfg)
        self.student = student_model
        cast_numpy_scalars(self.student)
        if not hasattr(self.student, 'head') or not hasattr(
                self.student.head, '_get_loss'):
            raise DistillerConfigError(
                f'The student ({type(self.student).__name__}) needs a head '
                f'with _get_loss (an mmpretrain ClsHead).')
        self.student_loss_weight = float(student_loss_weight)
        self.distill_enabled = True

        self._build_teachers(teacher, teachers)
        self._build_taps(taps or {})
        self.connectors = nn.ModuleDict({
            name: self._build_connector(name, cfg)
            for name, cfg in (connectors or {}).items()
        })
        self._terms = [
            self._build_loss(name, cfg) for name, cfg in (losses or
                                                           {}).items()
        ]
        self.losses = nn.ModuleDict(
            {term.name: term.module
             for term in self._terms})
        self._teachers_for_logits = self._teachers_needing_logits()
        self.input_size = self._resolve_input_size(input_size)
        self._checked_sizes = set()
        self._install_taps()
        if dry_run:
            self._dry_run()

    # ------------------------------------------------------------------ build
    def _build_teachers(self, teacher, teachers):
        if teacher is not None and teachers is not None:
            raise DistillerConfigError('Give either teacher or teachers.')
        specs = dict(teacher=teacher) if teacher is not None else dict(
            teachers or {})
        built, self._renorm = {}, {}
        for name, spec in specs.items():
            if name == 'student':
                raise DistillerConfigError('"student" is no teacher name.')
            model, preprocessor = build_teacher(name, spec)
            built[name] = model
            renorm = renormalisation(self.data_preprocessor, preprocessor)
            if renorm is not None:
                scale, shift, flip = renorm
                self.register_buffer(f'_renorm_scale_{name}', scale, False)
                self.register_buffer(f'_renorm_shift_{name}', shift, False)
                self._renorm[name] = flip
        # A plain dict attribute: not registered as submodules on purpose.
        self.__dict__['teachers'] = built

    def _build_taps(self, taps: Dict[str, dict]):
        models = {'student': self.student, **self.teachers}
        per_model = {name: [] for name in models}
        reserved = set(_BUILTIN_SOURCES) | {'logits_t'} | {
            f'logits_{t}'
            for t in self.teachers
        }
        for name, spec in taps.items():
            spec = dict(spec)
            owner = spec.pop('model', 'student')
            if name in reserved:
                raise DistillerConfigError(
                    f'Tap name {name!r} is reserved for a built-in source.')
            if owner not in models:
                raise DistillerConfigError(
                    f'Tap {name!r}: model {owner!r} is neither "student" nor '
                    f'a teacher ({sorted(self.teachers)}).')
            if 'path' not in spec:
                raise DistillerConfigError(f'Tap {name!r} needs a path.')
            try:
                per_model[owner].append(
                    Tap(name, models[owner], owner, **spec))
            except (KeyError, TypeError, ValueError) as e:
                raise DistillerConfigError(
                    e.args[0] if e.args else str(e)) from None
        self._student_taps = TapSet(per_model.pop('student'))
        self._teacher_taps = {n: TapSet(t) for n, t in per_model.items()}
        self._tap_owner = {
            tap.name: tap.owner
            for taps_ in [self._student_taps, *self._teacher_taps.values()]
            for tap in taps_
        }

    def _build_connector(self, name: str, cfg: dict) -> nn.Module:
        cfg = dict(cfg)
        cls = MODELS.get(cfg.get('type'))
        if cls is not None and 'teachers' in inspect.signature(
                cls.__init__).parameters:
            cfg['teachers'] = _TeacherView(self.teachers)
        return MODELS.build(cfg)

    def _sources(self) -> set:
        sources = set(_BUILTIN_SOURCES) | set(self._tap_owner)
        sources |= {f'logits_{t}' for t in self.teachers}
        if self.teachers:
            sources.add('logits_t')
        return sources

    def _build_loss(self, name: str, cfg: dict) -> _LossTerm:
        cfg = dict(cfg)
        if not name.startswith('loss'):
            raise DistillerConfigError(
                f'Loss name {name!r} must start with "loss" (mmengine only '
                f'sums and logs such entries).')
        inputs = cfg.pop('inputs', None)
        warmup = cfg.pop('warmup', None)
        if not isinstance(inputs, dict) or not inputs:
            raise DistillerConfigError(
                f'Loss {name!r} needs inputs=dict(<forward argument>='
                f'<source>, ...); available sources: '
                f'{sorted(self._sources())}.')
        module = MODELS.build(cfg)
        parsed = {}
        for arg, text in inputs.items():
            try:
                # A list of expressions gives the loss a list of values.
                parsed[arg] = tuple(map(parse_expression, text)) if \
                    isinstance(text, (list, tuple)) else parse_expression(text)
            except (ValueError, TypeError) as e:
                raise DistillerConfigError(f'Loss {name!r}: {e}') from None
        self._check_signature(name, module, parsed)
        sources = self._sources()
        for arg, value in parsed.items():
            for node in _walk_input(value):
                if isinstance(node, Source) and node.name not in sources:
                    raise DistillerConfigError(
                        f'Loss {name!r}, input {arg}={_input_text(value)!r}: '
                        f'no source {node.name!r}. Available: '
                        f'{sorted(sources)}.')
                if isinstance(node, Call) and node.connector not in \
                        self.connectors:
                    raise DistillerConfigError(
                        f'Loss {name!r}, input {arg}={_input_text(value)!r}: '
                        f'no connector {node.connector!r}. Connectors: '
                        f'{sorted(self.connectors)}.')
        if warmup is not None:
            warmup = dict(warmup)
            by, length = warmup.pop('by', 'epoch'), warmup.pop('length', 0)
            if by not in ('epoch', 'iter') or int(length) < 1 or warmup:
                raise DistillerConfigError(
                    f'Loss {name!r}: warmup must be dict(by="epoch"|"iter", '
                    f'length=N>=1).')
            warmup = (by, int(length))
        return _LossTerm(name, module, parsed, warmup)

    @staticmethod
    def _check_signature(name: str, module: nn.Module, inputs: dict):
        params = inspect.signature(module.forward).parameters
        takes_kwargs = any(p.kind == p.VAR_KEYWORD for p in params.values())
        required = [
            n for n, p in params.items()
            if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL,
                                                       p.VAR_KEYWORD)
        ]
        missing = [n for n in required if n not in inputs]
        unknown = [n for n in inputs if n not in params and not takes_kwargs]
        if missing or unknown:
            raise DistillerConfigError(
                f'Loss {name!r} ({type(module).__name__}.forward takes '
                f'{list(params)}): missing inputs {missing}, unknown inputs '
                f'{unknown}.')

    def _teachers_needing_logits(self) -> set:
        needed = set()
        for term in self._terms:
            for value in term.inputs.values():
                for node in _walk_input(value):
                    if not isinstance(node, Source):
                        continue
                    if node.name == 'logits_t':
                        needed.add(next(iter(self.teachers)))
                    elif node.name.startswith('logits_') and \
                            node.name[len('logits_'):] in self.teachers:
                        needed.add(node.name[len('logits_'):])
        return needed

    def _resolve_input_size(self, input_size) -> Tuple[int, int]:
        if isinstance(input_size, int):
            return (input_size, input_size)
        if input_size is not None:
            return tuple(input_size)
        for model in [self.student, *self.teachers.values()]:
            size = expected_input_size(model)
            if size is not None:
                return size
        return (224, 224)

    def _install_taps(self):
        self._student_taps.install()
        for taps in self._teacher_taps.values():
            taps.install()

    def remove_taps(self):
        """Remove every forward hook this distiller put on its models."""
        self._student_taps.remove()
        for taps in self._teacher_taps.values():
            taps.remove()

    # -------------------------------------------------------------- run time
    def _check_teacher_input(self, inputs: torch.Tensor):
        size = tuple(inputs.shape[-2:])
        if size in self._checked_sizes:
            return
        for name, teacher in self.teachers.items():
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

    def _teacher_input(self, name: str, inputs: torch.Tensor) -> torch.Tensor:
        if name not in self._renorm:
            return inputs
        if self._renorm[name]:
            inputs = inputs.flip(1)
        return torch.addcmul(
            getattr(self, f'_renorm_shift_{name}').to(inputs.dtype), inputs,
            getattr(self, f'_renorm_scale_{name}').to(inputs.dtype))

    def _run_teacher(self, name: str, inputs: torch.Tensor) -> dict:
        taps = self._teacher_taps[name]
        need_logits = name in self._teachers_for_logits
        if not need_logits and not len(taps):
            return {}
        teacher = self.teachers[name]
        x = self._teacher_input(name, inputs)
        logits = None
        taps.enable()
        try:
            # The whole forward, so that taps on the head fire too; after
            # the dry run a teacher whose logits are unused stops at its
            # last tap (StopForward).
            with torch.no_grad():
                logits = teacher(x, mode='tensor')
        except StopForward:
            pass
        finally:
            captured = taps.collect()
        if need_logits:
            captured[f'logits_{name}'] = logits
        return captured

    def _labels(self, data_samples: List[DataSample], soft: bool,
                num_classes: int) -> torch.Tensor:
        if 'gt_score' in data_samples[0]:
            scores = torch.stack([s.gt_score for s in data_samples])
            return scores if soft else scores.argmax(dim=1)
        labels = torch.cat([s.gt_label for s in data_samples])
        return F.one_hot(labels, num_classes).float() if soft else labels

    def _source(self, name: str, values: dict, data_samples) -> object:
        if name in values:
            return values[name]
        if name in ('labels', 'soft_labels'):
            return self._labels(data_samples, name == 'soft_labels',
                                values['logits_s'].shape[1])
        if name in ('epoch', 'iter'):
            return MessageHub.get_current_instance().get_info(name, 0)
        raise KeyError(f'Source {name!r} was not produced in this step '
                       f'(is its tap\'s module run by the forward?).')

    def _warmup_factor(self, warmup) -> float:
        if warmup is None:
            return 1.0
        by, length = warmup
        step = MessageHub.get_current_instance().get_info(by, 0)
        return min(1.0, (step + 1) / length)

    def distill_losses(self, values: dict, data_samples) -> dict:
        """Every configured loss term, weighted and ramped.

        The extension point for distillers that add terms of their own.

        Args:
            values (dict): Tap captures, ``logits_s`` and teachers' logits
                of this step.
            data_samples (list[DataSample]): The batch's samples.

        Returns:
            dict[str, Tensor]: One entry per configured loss.
        """
        cache = {}

        def evaluate(expr):
            if isinstance(expr, Source):
                if expr not in cache:
                    cache[expr] = self._source(expr.name, values, data_samples)
                return cache[expr]
            # One call per connector and arguments, whatever key is read, so
            # e.g. a random mask is shared by the terms that use it.
            call = Call(expr.connector, expr.args)
            if call not in cache:
                args = [evaluate(a) for a in expr.args]
                try:
                    cache[call] = self.connectors[expr.connector](*args)
                except _ERRORS_TO_EXPLAIN as e:
                    if isinstance(e, torch.OutOfMemoryError):
                        raise
                    raise DistillerConfigError(
                        f'Connector {expr.connector!r} failed on '
                        f'{", ".join(_describe(a) for a in args)} (from '
                        f'{str(call)!r}): {e}') from e
            out = cache[call]
            return out[expr.key] if expr.key is not None else out

        losses = {}
        for term in self._terms:
            kwargs = {
                arg: [evaluate(e) for e in value] if isinstance(
                    value, tuple) else evaluate(value)
                for arg, value in term.inputs.items()
            }
            try:
                value = term.module(**kwargs)
            except _ERRORS_TO_EXPLAIN as e:
                if isinstance(e, torch.OutOfMemoryError):
                    raise
                described = ', '.join(
                    f'{arg}={_input_text(term.inputs[arg])!r} '
                    f'{_describe(v)}'
                    for arg, v in kwargs.items())
                raise DistillerConfigError(
                    f'Loss {term.name!r} ({type(term.module).__name__}) '
                    f'failed on {described}: {e}') from e
            factor = self._warmup_factor(term.warmup)
            losses[term.name] = value if factor == 1.0 else value * factor
        return losses

    def _idle_term(self, student_values: dict) -> torch.Tensor:
        """Zero that touches every connector/loss parameter and student
        tap, so that DDP (find_unused_parameters=False) sees all of them
        used while distillation is off."""
        params = [*self.connectors.parameters(), *self.losses.parameters()]
        terms = [p.view(-1)[:1].sum() for p in params]
        terms += [
            v.sum() for v in student_values.values()
            if torch.is_tensor(v) and v.requires_grad
        ]
        return sum(terms) * 0.0 if terms else 0.0

    def loss(self, inputs: torch.Tensor,
             data_samples: List[DataSample]) -> Dict[str, torch.Tensor]:
        """Teacher(s) and student forward, then every loss term.

        Args:
            inputs (Tensor): Preprocessed (and batch-augmented) images,
                (B, 3, H, W).
            data_samples (list[DataSample]): With ``gt_label`` or, after
                Mixup/CutMix, ``gt_score``.

        Returns:
            dict[str, Tensor]: ``loss_cls`` (the student's weighted own loss)
            and one entry per configured loss.
        """
        values = {}
        if self.distill_enabled:
            self._check_teacher_input(inputs)
            for name in self.teachers:
                values.update(self._run_teacher(name, inputs))
            first = f'logits_{next(iter(self.teachers), None)}'
            if first in values:
                values['logits_t'] = values[first]
        self._student_taps.enable()
        try:
            logits = self.student.head(self.student.extract_feat(inputs))
        finally:
            student_values = self._student_taps.collect()
        losses = {}
        for key, value in self.student.head._get_loss(logits,
                                                      data_samples).items():
            losses['loss_cls' if key == 'loss' else key] = value
        losses['loss_cls'] = losses['loss_cls'] * self.student_loss_weight
        if not self.distill_enabled:
            losses['loss_cls'] = losses['loss_cls'] + self._idle_term(
                student_values)
            return losses
        values.update(student_values)
        values['logits_s'] = logits
        losses.update(self.distill_losses(values, data_samples))
        return losses

    def forward(self,
                inputs: torch.Tensor,
                data_samples: Optional[List[DataSample]] = None,
                mode: str = 'tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        return self.student(inputs, data_samples, mode=mode)

    def extract_feat(self, inputs: torch.Tensor, **kwargs):
        """The student's features (for mmpretrain tools that call it)."""
        return self.student.extract_feat(inputs, **kwargs)

    # --------------------------------------------------------------- dry run
    def _dry_run(self):
        """One dummy batch through the whole loss computation.

        Turns wrong tap paths/selectors, loss inputs and shapes into a
        :class:`DistillerConfigError` now, and records the order in which
        teacher taps fire so that a teacher whose logits are not needed
        stops after its last tapped module.
        """
        num_classes = getattr(self.student.head, 'num_classes', 2)
        inputs = torch.randn(2, 3, *self.input_size)
        data_samples = [
            DataSample().set_gt_label(i % num_classes) for i in range(2)
        ]
        modes = {m: m.training for m in self.modules()}
        self.eval()
        try:
            with torch.no_grad():
                self.loss(inputs, data_samples)
                teacher_values = {
                    name: list(self._run_teacher(name, inputs))
                    for name in self.teachers
                }
        except (RuntimeError, ValueError, TypeError, IndexError,
                KeyError) as e:
            if isinstance(e, DistillerConfigError):
                raise DistillerConfigError(
                    f'Dry run of the distiller at build time: {e}') from e
            raise DistillerConfigError(
                f'Dry run of the distiller at build time failed on a '
                f'{self.input_size[0]}x{self.input_size[1]} batch (set '
                f'input_size if that is not the training size): '
                f'{type(e).__name__}: {e}') from e
        finally:
            for module, training in modes.items():
                module.training = training
        for name, captured in teacher_values.items():
            fired = [n for n in captured if not n.startswith('logits_')]
            expected = {tap.name for tap in self._teacher_taps[name]}
            if set(fired) != expected:
                raise DistillerConfigError(
                    f'Teacher {name!r}: taps {sorted(expected - set(fired))} '
                    f'never fired in a forward pass (is the module used?).')
            if fired and name not in self._teachers_for_logits:
                for tap in self._teacher_taps[name]:
                    tap.stop_after = tap.name == fired[-1]

    # ---------------------------------------------- teachers outside the tree
    def train(self, mode: bool = True):
        super().train(mode)
        for teacher in self.teachers.values():
            teacher.eval()
        return self

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        for teacher in self.teachers.values():
            teacher._apply(fn, *args, **kwargs)
        return self

    def __deepcopy__(self, memo):
        """Copies share the frozen teachers (e.g. EMA copies of the model);
        each copy puts its own hooks on its own student."""
        for teacher in self.teachers.values():
            for obj in [*teacher.modules(), *teacher.parameters(),
                        *teacher.buffers()]:
                memo[id(obj)] = obj
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
