"""The one error type of a distiller config, and context for run-time
errors.

A config that cannot work raises :class:`DistillerConfigError` while the
model is built (its dry run included). At training time an error keeps its
type (a CUDA error stays a CUDA error, a NaN check stays what it was) and
gets the loss, its inputs and their shapes as a note.

Every number a user sets (a loss weight, a temperature, a stage end, k-NN's
``k``) goes through :func:`check_number` where it enters.
"""
import math
import numbers
from typing import Optional

import torch

__all__ = ['DistillerConfigError', 'check_number', 'describe', 'add_context']


class DistillerConfigError(ValueError):
    """A distiller config that cannot work: bad tap path, missing loss
    input, mismatched shapes, a reserved name, a number out of range.
    Raised at build time."""


def _allowed(low, high, low_open, high_open, integer) -> str:
    """What :func:`check_number` accepts, in words: 'a finite number > 0',
    'an integer >= 1', 'a finite number in (0, 1)'."""
    kind = 'an integer' if integer else 'a finite number'
    if low is not None and high is not None:
        return (f'{kind} in {"(" if low_open else "["}{low:g}, {high:g}'
                f'{")" if high_open else "]"}')
    if low is not None:
        return f'{kind} {">" if low_open else ">="} {low:g}'
    if high is not None:
        return f'{kind} {"<" if high_open else "<="} {high:g}'
    return kind


def check_number(key: str,
                 value,
                 *,
                 low: Optional[float] = None,
                 high: Optional[float] = None,
                 low_open: bool = False,
                 high_open: bool = False,
                 integer: bool = False):
    """Return ``value`` if it is a finite real number within the bounds,
    else raise a :class:`DistillerConfigError` that names ``key``, the value
    and what is allowed.

    NaN and ±inf are refused, and so are ``bool`` (``True`` is not a
    weight), strings and tensors.

    Args:
        key (str): The setting as a user writes it, e.g.
            ``'model.student_loss_weight'`` or ``'temperature'``.
        value: The value to check.
        low (float, optional): Lower bound. Defaults to None (none).
        high (float, optional): Upper bound. Defaults to None (none).
        low_open (bool): Exclude ``low`` itself (a temperature is > 0).
            Defaults to False.
        high_open (bool): Exclude ``high`` itself. Defaults to False.
        integer (bool): Require an integer (a stage end, k-NN's ``k``).
            Defaults to False.

    Returns:
        The value, unchanged.
    """
    kind = numbers.Integral if integer else numbers.Real
    ok = isinstance(value, kind) and not isinstance(value, bool) and (
        integer or math.isfinite(value))
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        raise DistillerConfigError(
            f'{key} must be '
            f'{_allowed(low, high, low_open, high_open, integer)}, got '
            f'{value!r}.')
    return value


def describe(value) -> str:
    """A short description of a loss input: shapes, not values."""
    if torch.is_tensor(value):
        return f'Tensor{tuple(value.shape)}'
    if isinstance(value, dict):
        return '{' + ', '.join(f'{k}: {describe(v)}'
                               for k, v in value.items()) + '}'
    if isinstance(value, (tuple, list)):
        return f'{type(value).__name__}[' + ', '.join(
            describe(v) for v in value) + ']'
    return repr(value)


def add_context(error: BaseException, context: str) -> BaseException:
    """Attach ``context`` to ``error`` as a note (shown under its message
    in tracebacks) and return it, type unchanged."""
    error.add_note(context)
    return error


def message_with_notes(error: BaseException) -> str:
    """``error``'s message followed by its notes, for re-raising it as a
    config error at build time."""
    text = f'{type(error).__name__}: {error}' if not isinstance(
        error, DistillerConfigError) else str(error)
    notes = getattr(error, '__notes__', [])
    return '\n'.join([text, *notes]) if notes else text
