"""Connector widths from the build-time dry run: left-out widths filled,
written ones checked (see :mod:`cls_kd.models.connectors.widths`).

Within :func:`settling_widths`, every call of a connector with measurable
widths first measures its inputs and the tensor its output is compared
with: a loss whose inputs hold ``preds`` and ``targets`` compares the call
that makes ``preds`` (or the i-th of a list) with ``targets`` (its i-th),
through connectors that keep channels (``keeps_channels``). A connector
with widths left out is built then, in place, before it first runs.
"""
from contextlib import contextmanager
from typing import Dict, Iterator, List

import torch.nn as nn

from cls_kd.errors import DistillerConfigError, describe

from ..connectors.widths import MeasuredWidths
from .expressions import Call, Expression, Source
from .wiring import LossWiring

__all__ = ['settling_widths', 'require_written_widths', 'output_targets']

#: Loss arguments whose values are compared: (predicted, target).
COMPARED = (('preds', 'targets'), )


def _plain(call: Call) -> Call:
    return Call(call.connector, call.args)


def output_targets(terms, connectors: nn.ModuleDict) -> Dict[Call, Expression]:
    """What each connector call's output is compared with.

    Args:
        terms (list[LossTerm]): The parsed loss terms.
        connectors (nn.ModuleDict): The distiller's connectors.

    Returns:
        dict: ``call (without key) -> target expression``; the first term
        that compares a call decides.
    """
    targets: Dict[Call, Expression] = {}

    def visit(expr: Expression, target: Expression) -> None:
        if not isinstance(expr, Call):
            return
        targets.setdefault(_plain(expr), target)
        if getattr(connectors[expr.connector], 'keeps_channels', False):
            visit(expr.args[0], target)

    for term in terms:
        for pred, target in COMPARED:
            preds, goals = term.inputs.get(pred), term.inputs.get(target)
            if preds is None or goals is None:
                continue
            if not isinstance(preds, tuple):
                preds, goals = (preds, ), (goals, )
            if isinstance(goals, tuple) and len(goals) == len(preds):
                for p, t in zip(preds, goals):
                    visit(p, t)
    return targets


class _Settler:
    """The hook :class:`LossWiring` calls before each connector call."""

    def __init__(self, wiring: LossWiring):
        self.connectors = wiring.connectors
        self.targets = output_targets(wiring.terms, wiring.connectors)
        self.filled: List[MeasuredWidths] = []

    def __call__(self, call: Call, args: list, evaluate) -> None:
        connector = self.connectors[call.connector]
        if not isinstance(connector, MeasuredWidths):
            return
        goal = self.targets.get(call)
        target = evaluate(goal) if goal is not None else None
        try:
            filled = connector.settle_widths(
                connector.measure_widths(args, target))
        except ValueError as e:
            inputs = ', '.join(
                f'{a} {describe(v)}' if isinstance(a, Source) else
                describe(v) for a, v in zip(call.args, args))
            compared = (f'its output is compared with {str(goal)!r} '
                        f'{describe(target)}' if goal is not None else
                        'no loss compares its output with a target')
            raise DistillerConfigError(
                f'Connector {call.connector!r} '
                f'({type(connector).__name__}) in {str(call)!r}: {e} Input '
                f'{inputs}; {compared}.') from None
        if filled:
            self.filled.append(connector)


def require_written_widths(connectors: nn.ModuleDict, why: str) -> None:
    """Raise a :class:`DistillerConfigError` naming every connector whose
    widths were left out and are still unmeasured.

    Args:
        connectors (nn.ModuleDict): The distiller's connectors.
        why (str): Why they were not measured, for the message.
    """
    pending = {
        name: c.pending_widths
        for name, c in connectors.items()
        if isinstance(c, MeasuredWidths) and c.pending_widths
    }
    if pending:
        listed = '; '.join(f'{name!r} ({type(connectors[name]).__name__}): '
                           f'{keys}' for name, keys in pending.items())
        raise DistillerConfigError(
            f'Connector widths left out and not measured: {listed}. {why}; '
            f'write them in model.connectors.')


@contextmanager
def settling_widths(wiring: LossWiring) -> Iterator[None]:
    """Within, ``wiring.evaluate`` measures the widths of each connector
    call: the build-time dry run runs inside.

    On leaving, the connectors built during the dry run take their own
    training mode again (the dry run ran in eval mode), and a connector
    with widths left out that no loss term called is an error.

    Args:
        wiring (LossWiring): The distiller's loss wiring.
    """
    settler = _Settler(wiring)
    wiring.before_call = settler
    try:
        yield
    finally:
        wiring.before_call = None
    for connector in settler.filled:
        connector.train(connector.training)
    require_written_widths(
        wiring.connectors,
        'No loss term called them in the build-time dry run')
