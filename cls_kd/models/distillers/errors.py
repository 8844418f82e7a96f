"""The one error type of a distiller config, and context for run-time
errors.

A config that cannot work raises :class:`DistillerConfigError` while the
model is built (its dry run included). At training time an error keeps its
type (a CUDA error stays a CUDA error, a NaN check stays what it was) and
gets the loss, its inputs and their shapes as a note.
"""
import torch

__all__ = ['DistillerConfigError', 'describe', 'add_context']


class DistillerConfigError(ValueError):
    """A distiller config that cannot work: bad tap path, missing loss
    input, mismatched shapes, a reserved name. Raised at build time."""


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
