"""``torch.compile`` for cls_kd's models: what is compiled, and helpers that
keep the models friendly to it."""
import inspect
from typing import List, Union

import numpy as np
import torch
import torch.nn as nn

__all__ = [
    'cast_numpy_scalars', 'compile_classifier_parts', 'compile_model',
    'compile_options'
]


def cast_numpy_scalars(model: nn.Module) -> int:
    """Replace NumPy scalar attributes of every submodule by Python numbers.

    mmpretrain 1.2 passes ``np.linspace`` entries as drop-path rates, so
    ``DropPath.drop_prob`` is an ``np.float64``; dynamo cannot trace
    comparisons on it and breaks each block into its own graph.

    Returns:
        int: how many attributes were cast.
    """
    count = 0
    for module in model.modules():
        for name, value in vars(module).items():
            if isinstance(value, np.generic):
                setattr(module, name, value.item())
                count += 1
    return count


def compile_model(model: nn.Module, **kwargs) -> List[str]:
    """Compile, in place, the parts of a model that a training step runs.

    A distiller (anything with ``compile_parts``) compiles its student,
    connectors, losses and teachers itself (see
    :meth:`BaseDistiller.compile_parts`). Any other model (a plain
    mmpretrain classifier) has its ``backbone``, ``neck`` and ``head``
    compiled with :meth:`torch.nn.Module.compile`, which keeps parameter
    names and state dicts as they are. The step's glue (data preprocessing,
    loss bookkeeping, the optimizer) stays eager: compiling it would only add
    graph breaks.

    Args:
        model (nn.Module): The model, before or after ``.to(device)`` and
            DDP wrapping (pass the wrapped module).
        **kwargs: Options of :func:`torch.compile` (e.g. ``mode``,
            ``dynamic``, ``backend``).

    Returns:
        list[str]: Names of the compiled parts.
    """
    if hasattr(model, 'compile_parts'):
        return model.compile_parts(**kwargs)
    cast_numpy_scalars(model)
    names = compile_classifier_parts(model, **kwargs)
    if not names:
        raise ValueError(
            f'compile: {type(model).__name__} has no backbone, neck or head '
            f'to compile.')
    return names


def compile_classifier_parts(model: nn.Module, **kwargs) -> List[str]:
    """:meth:`torch.nn.Module.compile` the ``backbone``, ``neck`` and
    ``head`` a model has (in place: names and state dicts unchanged);
    returns the names of those it had (none: nothing compiled)."""
    names = []
    for name in ('backbone', 'neck', 'head'):
        part = getattr(model, name, None)
        if isinstance(part, nn.Module):
            part.compile(**kwargs)
            names.append(name)
    return names


def compile_options(value: Union[bool, dict, None]) -> Union[dict, None]:
    """The :func:`torch.compile` options a ``compile`` config value asks for:
    None for ``None``/``False``, ``{}`` for ``True``, the dict itself for a
    dict of valid options; a ``ValueError`` naming the problem otherwise."""
    if value is None or value is False:
        return None
    if value is True:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f'compile must be True, False or a dict of '
                         f'torch.compile options, got {value!r}.')
    allowed = [
        name for name in inspect.signature(torch.compile).parameters
        if name != 'model'
    ]
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise ValueError(f'compile: unknown torch.compile option(s) '
                         f'{unknown}; options: {allowed}.')
    return dict(value)
