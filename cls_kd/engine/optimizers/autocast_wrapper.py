"""Mixed precision by autocast alone, on any device."""
from contextlib import contextmanager

import torch
import torch.nn as nn
from mmengine.optim import OptimWrapper

from cls_kd.registry import OPTIM_WRAPPERS

from .non_finite import NonFiniteGuardMixin

__all__ = ['AutocastOptimWrapper']


@OPTIM_WRAPPERS.register_module()
class AutocastOptimWrapper(NonFiniteGuardMixin, OptimWrapper):
    """Runs the forward under ``torch.autocast`` (bfloat16 by default).

    mmengine's ``AmpOptimWrapper`` refuses CPU-only machines; bfloat16 has
    float32's range and needs no loss scaler, so autocast is all it takes.
    The teacher runs inside the same context as the student.

    Args:
        dtype (str): ``'bfloat16'`` or ``'float16'``. Defaults to
            ``'bfloat16'``.
        skip_nonfinite (bool): Skip, on every rank, the optimizer steps whose
            loss or gradients are not finite on any rank, as
            :class:`NonFiniteGuardOptimWrapper` does. Defaults to False.
        max_consecutive_skips (int): With ``skip_nonfinite``, how many
            skipped steps in a row stop training. Defaults to 10.
        **kwargs: Arguments of ``OptimWrapper``.
    """

    def __init__(self,
                 *args,
                 dtype: str = 'bfloat16',
                 skip_nonfinite: bool = False,
                 **kwargs):
        super().__init__(*args, skip_nonfinite=skip_nonfinite, **kwargs)
        if dtype not in ('bfloat16', 'float16'):
            raise ValueError(f'dtype must be bfloat16 or float16, got '
                             f'{dtype!r}.')
        self.cast_dtype = getattr(torch, dtype)

    @contextmanager
    def optim_context(self, model: nn.Module):
        device = next(model.parameters()).device.type
        with super().optim_context(model), torch.autocast(
                device_type=device, dtype=self.cast_dtype):
            yield
