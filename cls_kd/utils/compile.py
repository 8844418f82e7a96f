"""Helpers that keep models friendly to ``torch.compile``."""
import numpy as np
import torch.nn as nn

__all__ = ['cast_numpy_scalars']


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
