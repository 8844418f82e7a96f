"""What the per-method parts of the reference step share: the refusal and
reading a loss input of the config."""
from typing import Optional, Tuple

from cls_kd.models.distillers.expressions import (
    Call,
    Expression,
    Source,
    parse_expression,
)

__all__ = ['ReferenceUnsupported', 'parse', 'source', 'unary']


class ReferenceUnsupported(ValueError):
    """The config does work the reference step does not write out."""


def parse(text) -> Expression:
    """A loss input of the config, parsed as the distiller parses it (a
    list of them is not an expression: refused)."""
    if not isinstance(text, str):
        raise ReferenceUnsupported(f'loss input {text!r}: one expression '
                                   f'expected here.')
    try:
        return parse_expression(text)
    except ValueError as e:
        raise ReferenceUnsupported(str(e)) from None


def source(expr: Expression) -> Optional[str]:
    """The name of a plain source (a tap, ``logits_t``, ...), else None."""
    return expr.name if isinstance(expr, Source) else None


def unary(expr: Expression) -> Optional[Tuple[str, Expression]]:
    """``(connector, argument)`` of ``connector(argument)`` without a
    ``.key``, else None."""
    if isinstance(expr, Call) and len(expr.args) == 1 and expr.key is None:
        return expr.connector, expr.args[0]
    return None
