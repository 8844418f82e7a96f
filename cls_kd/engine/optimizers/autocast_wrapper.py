"""Mixed precision by autocast alone, on any device."""
import logging
from contextlib import contextmanager

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import OptimWrapper

from cls_kd.registry import OPTIM_WRAPPERS
from cls_kd.utils.amp import cpu_bf16_support

from .non_finite import NonFiniteGuardMixin

__all__ = ['AutocastOptimWrapper']


@OPTIM_WRAPPERS.register_module()
class AutocastOptimWrapper(NonFiniteGuardMixin, OptimWrapper):
    """Runs the forward under ``torch.autocast`` (bfloat16 by default).

    mmengine's ``AmpOptimWrapper`` refuses CPU-only machines; bfloat16 has
    float32's range and needs no loss scaler, so autocast is all it takes.
    The teacher runs inside the same context as the student. On a CPU
    without native bfloat16 (see ``cls_kd.utils.amp``) the first step logs
    a warning: it is much slower than float32 there.

    Args:
        dtype (str): ``'bfloat16'`` or ``'float16'``. Defaults to
            ``'bfloat16'``.
        skip_nonfinite (bool): Skip, on every rank, the optimizer steps whose
            loss or gradients are not finite on any rank, as
            :class:`NonFiniteGuardOptimWrapper` does; False turns the guard
            off. Defaults to True.
        max_consecutive_skips (int): With ``skip_nonfinite``, how many
            skipped steps in a row stop training. Defaults to 10.
        **kwargs: Arguments of ``OptimWrapper``.
    """

    def __init__(self,
                 *args,
                 dtype: str = 'bfloat16',
                 skip_nonfinite: bool = True,
                 **kwargs):
        super().__init__(*args, skip_nonfinite=skip_nonfinite, **kwargs)
        if dtype not in ('bfloat16', 'float16'):
            raise ValueError(f'dtype must be bfloat16 or float16, got '
                             f'{dtype!r}.')
        self.cast_dtype = getattr(torch, dtype)
        self._device_checked = False

    def _check_device(self, device: str) -> None:
        self._device_checked = True
        if device != 'cpu':
            return
        native, cpu = cpu_bf16_support()
        if not native:
            print_log(
                f'AutocastOptimWrapper: {self.cast_dtype} autocast on a CPU '
                f'without native bfloat16 ({cpu}) is emulated and much '
                f'slower than float32 (a digits KD step: 13x to 24x).',
                logger='current', level=logging.WARNING)

    @contextmanager
    def optim_context(self, model: nn.Module):
        device = next(model.parameters()).device.type
        if not self._device_checked:
            self._check_device(device)
        with super().optim_context(model), torch.autocast(
                device_type=device, dtype=self.cast_dtype):
            yield
