"""Loss wiring: which loss reads what, parsed and checked once, evaluated
every step.

Each loss term names the value of every argument of its ``forward`` as an
expression (see :mod:`.expressions`): a tap, a built-in source, or a
connector applied to other expressions; or a list of them (the loss gets a
list). Connector calls are cached per step, so e.g. a random mask is shared
by every term that reads it.
"""
import inspect
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Set, Tuple, Union

import torch
import torch.nn as nn

from cls_kd.errors import DistillerConfigError, add_context, describe

from .expressions import Call, Expression, Source, parse_expression, walk
from .schedule import WeightSchedule

__all__ = ['LossTerm', 'LossWiring', 'touch']

Input = Union[Expression, Tuple[Expression, ...]]


@dataclass
class LossTerm:
    name: str
    module: nn.Module
    inputs: Dict[str, Input]
    schedule: WeightSchedule

    def nodes(self) -> List[Expression]:
        """Every (sub-)expression of every input."""
        return [n for value in self.inputs.values() for n in _nodes(value)]

    def sources(self) -> Set[str]:
        return {n.name for n in self.nodes() if isinstance(n, Source)}


def _nodes(value: Input) -> List[Expression]:
    exprs = value if isinstance(value, tuple) else (value, )
    return [node for expr in exprs for node in walk(expr)]


def _text(value: Input) -> str:
    if isinstance(value, tuple):
        return '[' + ', '.join(map(str, value)) + ']'
    return str(value)


def _check_signature(name: str, module: nn.Module, inputs: dict) -> None:
    params = inspect.signature(module.forward).parameters
    takes_kwargs = any(p.kind == p.VAR_KEYWORD for p in params.values())
    required = [
        n for n, p in params.items() if p.default is p.empty
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    missing = [n for n in required if n not in inputs]
    unknown = [n for n in inputs if n not in params and not takes_kwargs]
    if missing or unknown:
        raise DistillerConfigError(
            f'Loss {name!r} ({type(module).__name__}.forward takes '
            f'{list(params)}): missing inputs {missing}, unknown inputs '
            f'{unknown}.')


class LossWiring:
    """The parsed loss terms of a distiller.

    Args:
        losses (dict): ``name -> loss config`` plus ``inputs`` (required),
            ``warmup`` and ``schedule`` (optional, see :mod:`.schedule`).
        sources (set[str]): Names a plain input may refer to.
        connectors (nn.ModuleDict): The distiller's connectors.
        build (callable): Builds a loss module from its config.

    Attributes:
        before_call (callable, optional): Called as ``before_call(call,
            args, evaluate)`` before each connector call of
            :meth:`evaluate`; set only in the build-time dry run (see
            :func:`~.connector_widths.settling_widths`).
    """

    def __init__(self, losses: Dict[str, dict], sources: Set[str],
                 connectors: nn.ModuleDict, build: Callable):
        self.sources = set(sources)
        self.connectors = connectors
        self.before_call: Optional[Callable] = None
        self.terms = [
            self._parse(name, dict(cfg), build)
            for name, cfg in (losses or {}).items()
        ]

    def _parse(self, name: str, cfg: dict, build: Callable) -> LossTerm:
        if not name.startswith('loss'):
            raise DistillerConfigError(
                f'Loss name {name!r} must start with "loss" (mmengine only '
                f'sums and logs such entries).')
        inputs = cfg.pop('inputs', None)
        schedule = WeightSchedule(name, cfg.pop('warmup', None),
                                  cfg.pop('schedule', None))
        if not isinstance(inputs, dict) or not inputs:
            raise DistillerConfigError(
                f'Loss {name!r} needs inputs=dict(<forward argument>='
                f'<source>, ...); available sources: '
                f'{sorted(self.sources)}.')
        try:
            module = build(cfg)
        except ValueError as e:
            # The loss knows its arguments, not where it was configured.
            kind = getattr(cfg.get('type'), '__name__', cfg.get('type'))
            raise DistillerConfigError(
                f'model.losses.{name} ({kind}): {e}') from None
        parsed = {}
        for arg, text in inputs.items():
            try:
                parsed[arg] = tuple(map(parse_expression, text)) if \
                    isinstance(text, (list, tuple)) else parse_expression(text)
            except (ValueError, TypeError) as e:
                raise DistillerConfigError(f'Loss {name!r}: {e}') from None
        _check_signature(name, module, parsed)
        term = LossTerm(name, module, parsed, schedule)
        for arg, value in parsed.items():
            for node in _nodes(value):
                if isinstance(node, Source) and node.name not in self.sources:
                    raise DistillerConfigError(
                        f'Loss {name!r}, input {arg}={_text(value)!r}: no '
                        f'source {node.name!r}. Available: '
                        f'{sorted(self.sources)}.')
                if isinstance(node, Call) and \
                        node.connector not in self.connectors:
                    raise DistillerConfigError(
                        f'Loss {name!r}, input {arg}={_text(value)!r}: no '
                        f'connector {node.connector!r}. Connectors: '
                        f'{sorted(self.connectors)}.')
        return term

    @property
    def names(self) -> List[str]:
        return [term.name for term in self.terms]

    def modules(self) -> Dict[str, nn.Module]:
        return {term.name: term.module for term in self.terms}

    def evaluate(self, terms: Iterable[Tuple[LossTerm, float]],
                 source: Callable[[str], object]) -> dict:
        """The weighted value of each ``(term, factor)``.

        Args:
            terms: The active terms of this step with their factors.
            source (callable): Value of a source by name (taps, logits,
                labels, ...).

        Errors keep their type and get the term, its inputs and their
        shapes as a note.
        """
        cache = {}

        def evaluate(expr):
            if isinstance(expr, Source):
                if expr not in cache:
                    cache[expr] = source(expr.name)
                return cache[expr]
            # One call per connector and arguments, whatever key is read.
            call = Call(expr.connector, expr.args)
            if call not in cache:
                args = [evaluate(a) for a in expr.args]
                if self.before_call is not None:
                    self.before_call(call, args, evaluate)
                try:
                    cache[call] = self.connectors[expr.connector](*args)
                except Exception as e:
                    raise add_context(
                        e, f'In connector {expr.connector!r} on '
                        f'{", ".join(describe(a) for a in args)} (from '
                        f'{str(call)!r}).')
            out = cache[call]
            return out[expr.key] if expr.key is not None else out

        losses = {}
        for term, factor in terms:
            kwargs = {
                arg: [evaluate(e) for e in value]
                if isinstance(value, tuple) else evaluate(value)
                for arg, value in term.inputs.items()
            }
            try:
                value = term.module(**kwargs)
            except Exception as e:
                described = ', '.join(f'{arg}={_text(term.inputs[arg])!r} '
                                      f'{describe(v)}'
                                      for arg, v in kwargs.items())
                raise add_context(
                    e, f'Loss {term.name!r} ({type(term.module).__name__}) '
                    f'failed on {described}.')
            losses[term.name] = value if factor == 1.0 else value * factor
        return losses


class _Touch(torch.autograd.Function):
    """A zero whose backward gives each input a zero gradient in one op."""

    @staticmethod
    def forward(ctx, *params):
        ctx.save_for_backward(*params)
        return params[0].new_zeros((), dtype=torch.float32)

    @staticmethod
    def backward(ctx, grad):
        return tuple(torch._foreach_mul(list(ctx.saved_tensors), 0.0))


def touch(params: List[torch.Tensor]) -> torch.Tensor:
    """A zero loss term that marks every parameter of ``params`` as used, so
    that DDP (``find_unused_parameters=False``) is satisfied while the
    terms that normally use them are off -- one autograd node, no Python
    work per parameter in the step."""
    return _Touch.apply(*params)


def idle_term(params: List[torch.Tensor], student_values: dict):
    """A zero touching every parameter of ``params`` (the connectors' and
    losses') and every student tap value that needs grad, so that DDP sees
    all of them used while some terms are off; None if there is none."""
    terms = [
        v.sum() * 0.0 for value in student_values.values()
        for v in (value if isinstance(value, list) else [value])
        if torch.is_tensor(v) and v.requires_grad
    ]
    if params:
        terms.append(touch(params))
    return sum(terms) if terms else None
