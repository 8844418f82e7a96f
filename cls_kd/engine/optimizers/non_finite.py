"""Skipping optimizer steps whose loss or gradients are not finite.

One ``inf`` in a teacher's logits is enough to turn every student weight into
NaN, after which the run goes on to its end, wasting the compute and exiting
0. The guard here decides at each optimizer step, the same way on every rank,
whether the step is finite; if not, it drops the step, counts it, warns, and
stops the run after too many in a row, naming the loss terms and images of
the last step. Every config cls_kd ships trains with it;
``optim_wrapper.skip_nonfinite=False`` turns it off.
"""
import logging
from contextlib import contextmanager
from typing import Optional, Tuple

import torch
from mmengine.dist import get_comm_device, is_distributed
from mmengine.logging import print_log
from mmengine.optim import AmpOptimWrapper, OptimWrapper

from cls_kd.registry import OPTIM_WRAPPERS

from .finite import grads_are_finite, min_over_ranks
from .step_context import StepRecord

__all__ = [
    'NonFiniteStepError', 'grads_are_finite', 'NonFiniteGuardMixin',
    'NonFiniteGuardOptimWrapper', 'NonFiniteGuardAmpOptimWrapper'
]

# Key of the guard's counters in the optimizer wrapper's state dict.
_STATE_KEY = 'nonfinite_guard'


class NonFiniteStepError(RuntimeError):
    """Raised when too many optimizer steps in a row were not finite."""


class NonFiniteGuardMixin:
    """Skips, on every rank, an optimizer step that is not finite on one.

    Mixed into an :class:`OptimWrapper` (before it in the bases). A step is
    not finite when the loss of any micro-batch of its accumulation window
    (``accumulative_counts``), or any gradient when the window ends, is
    ``nan`` or ``inf`` on any rank. Such a step is skipped on every rank:
    no gradient clipping, no ``optimizer.step()`` (parameters and optimizer
    state such as Adam's moments and step count stay as they were), and the
    gradients are cleared.

    Backward runs as usual on every rank (DDP reduces gradients inside it);
    the decision is taken in :meth:`step`, where one all-reduce (MIN) of two
    flags (loss, gradients) makes it the same on every rank. Reading the
    flags costs one host-device synchronisation per optimizer step, and
    checking the gradients one ``torch._foreach_norm`` (2-norm) over them;
    only when that is not finite, a second one (max-norm) and a second
    all-reduce tell an overflow from a ``nan``/``inf`` (cost measured in
    docs/speed.md).

    Each skip writes ``train/nonfinite_skips`` (total) and
    ``train/nonfinite_consecutive`` (in a row) to the ``MessageHub``, which
    ``LoggerHook`` prints and sends to the visualizer backends, and logs a
    warning naming the iteration and what was not finite. The first finite
    step after skips writes ``train/nonfinite_consecutive = 0``. The last
    step of the run (``max_iters``, as the runner sets it) logs
    ``non-finite steps skipped: N (max in a row M; ...)``. After
    ``max_consecutive_skips`` skipped steps in a row, :meth:`step` raises
    :class:`NonFiniteStepError`, so the run exits non-zero; the parameters
    are then those of the last finite step. Its message lists, for the last
    forward of the step on that rank (kept by a forward hook on the model
    during ``optim_context``), the loss dict's terms with their values, the
    samples whose input holds ``nan``/``inf`` and the first image paths
    (``img_path`` of the data samples). The counters are saved in
    :meth:`state_dict` and restored on resume; a checkpoint without them
    loads with the counters at zero.

    Args:
        skip_nonfinite (bool): Turn the guard on. Off, the wrapper behaves
            exactly as the wrapper it is mixed into. Defaults to True.
        max_consecutive_skips (int): How many skipped optimizer steps in a
            row stop training. Defaults to 10.
        *args, **kwargs: Arguments of the optimizer wrapper.
    """

    def __init__(self,
                 *args,
                 skip_nonfinite: bool = True,
                 max_consecutive_skips: int = 10,
                 **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(skip_nonfinite, bool):
            raise ValueError('optim_wrapper.skip_nonfinite must be True or '
                             f'False, got {skip_nonfinite!r}.')
        if (not isinstance(max_consecutive_skips, int)
                or isinstance(max_consecutive_skips, bool)
                or max_consecutive_skips < 1):
            raise ValueError('optim_wrapper.max_consecutive_skips must be '
                             f'an int >= 1, got {max_consecutive_skips!r}.')
        self.skip_nonfinite = skip_nonfinite
        self.max_consecutive_skips = max_consecutive_skips
        self.nonfinite_skips = 0
        self.consecutive_skips = 0
        self.longest_skip_run = 0
        # Whether every loss since the last step was finite (a tensor, so
        # that recording it does not synchronise); None: no loss seen.
        self._loss_finite: Optional[torch.Tensor] = None
        self._last_forward = StepRecord()

    @contextmanager
    def optim_context(self, model):
        """The wrapped wrapper's context; with the guard on, the model's
        forward in it is recorded for :class:`NonFiniteStepError`'s
        message."""
        if not self.skip_nonfinite:
            with super().optim_context(model):
                yield
            return
        with super().optim_context(model), self._last_forward.watch(model):
            yield

    def backward(self, loss: torch.Tensor, **kwargs) -> None:
        if self.skip_nonfinite:
            finite = torch.isfinite(loss.detach()).all()
            if self._loss_finite is not None:
                finite = finite & self._loss_finite.to(finite.device)
            self._loss_finite = finite
        super().backward(loss, **kwargs)

    def step(self, **kwargs) -> None:
        """Step if loss and gradients are finite on every rank, else skip.

        Args:
            **kwargs: Arguments of ``optimizer.step``.
        """
        if not self.skip_nonfinite:
            super().step(**kwargs)
            return
        self._unscale_grads()
        loss_ok, grads_ok = self._finite_on_all_ranks()
        self._loss_finite = None
        try:
            if loss_ok and grads_ok:
                self._apply_step(**kwargs)
                if self.consecutive_skips:
                    self.consecutive_skips = 0
                    self.message_hub.update_scalar(
                        'train/nonfinite_consecutive', 0)
            else:
                self._abandon_step()
                self.optimizer.zero_grad()
                self._record_skip(loss_ok, grads_ok)
        finally:
            self._last_forward.clear()
        if self._inner_count == self._max_counts:
            self._log_summary()

    def state_dict(self) -> dict:
        state = super().state_dict()
        if self.skip_nonfinite:
            state[_STATE_KEY] = dict(
                skips=self.nonfinite_skips,
                consecutive=self.consecutive_skips,
                longest=self.longest_skip_run)
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        guard = state_dict.pop(_STATE_KEY, None)
        if guard is not None:
            self.nonfinite_skips = guard['skips']
            self.consecutive_skips = guard['consecutive']
            self.longest_skip_run = guard.get('longest',
                                              self.consecutive_skips)
        super().load_state_dict(state_dict)

    def _unscale_grads(self) -> None:
        """Bring the gradients to their true scale before they are checked
        (a loss-scaling wrapper divides by its scale here)."""

    def _apply_step(self, **kwargs) -> None:
        """Clip the (finite) gradients and step."""
        super().step(**kwargs)

    def _abandon_step(self) -> None:
        """Close a skipped step (a loss scaler updates its scale here)."""

    def _finite_on_all_ranks(self) -> Tuple[bool, bool]:
        """(loss finite, gradients finite), each on every rank."""
        params = [p for group in self.optimizer.param_groups
                  for p in group['params']]
        device = (get_comm_device() if is_distributed() else
                  params[0].device if params else torch.device('cpu'))
        loss_ok = (torch.ones((), dtype=torch.bool, device=device)
                   if self._loss_finite is None else
                   self._loss_finite.to(device))
        flags = torch.stack(
            [loss_ok, grads_are_finite(params, device, exact=False)])
        loss_ok, grads_ok = min_over_ranks(flags)
        if not grads_ok:
            # Every rank is here: the 2-norm overflowed or a gradient is
            # not finite on one of them; the max-norm tells which.
            grads_ok, = min_over_ranks(
                grads_are_finite(params, device, exact=True)[None])
        return loss_ok, grads_ok

    def _record_skip(self, loss_ok: bool, grads_ok: bool) -> None:
        self.nonfinite_skips += 1
        self.consecutive_skips += 1
        self.longest_skip_run = max(self.longest_skip_run,
                                    self.consecutive_skips)
        self.message_hub.update_scalar('train/nonfinite_skips',
                                       self.nonfinite_skips)
        self.message_hub.update_scalar('train/nonfinite_consecutive',
                                       self.consecutive_skips)
        what = ' and '.join(name for name, ok in (('loss', loss_ok),
                                                  ('gradients', grads_ok))
                            if not ok)
        if self.consecutive_skips >= self.max_consecutive_skips:
            seen = self._last_forward.describe()
            if seen:
                seen = ('\nThe last forward of that step, on this rank:\n' +
                        seen)
            raise NonFiniteStepError(
                f'{self.consecutive_skips} optimizer steps in a row had a '
                f'non-finite {what} (nan or inf), the last at iter '
                f'{self._inner_count}; training stopped with the parameters '
                'of the last finite step. Check the learning rate and its '
                'warm-up, the mixed precision settings (loss scale, fp16 vs '
                'bf16), and the teacher outputs (inf in the logits of a '
                'low-precision teacher), or raise max_consecutive_skips '
                f'(now {self.max_consecutive_skips}).{seen}')
        print_log(
            f'Skipped the optimizer step at iter {self._inner_count}: '
            f'non-finite {what} on at least one rank ('
            f'{self.consecutive_skips} in a row, {self.nonfinite_skips} in '
            'total). Parameters and optimizer state are unchanged.',
            logger='current',
            level=logging.WARNING)

    def _log_summary(self) -> None:
        """The guard's line at the end of training."""
        print_log(
            f'non-finite steps skipped: {self.nonfinite_skips} (max in a row '
            f'{self.longest_skip_run}; {self.max_consecutive_skips} in a row '
            'stop the run)',
            logger='current',
            level=logging.WARNING if self.nonfinite_skips else logging.INFO)


@OPTIM_WRAPPERS.register_module()
class NonFiniteGuardOptimWrapper(NonFiniteGuardMixin, OptimWrapper):
    """``OptimWrapper`` that skips non-finite steps on every rank.

    See :class:`NonFiniteGuardMixin` for what is skipped, logged and saved.

    Args:
        optimizer (Optimizer): The optimizer.
        skip_nonfinite (bool): False turns the guard off: the wrapper is
            then mmengine's ``OptimWrapper``. Defaults to True.
        max_consecutive_skips (int): How many skipped optimizer steps in a
            row stop training with :class:`NonFiniteStepError`.
            Defaults to 10.
        accumulative_counts (int): As in ``OptimWrapper``; a non-finite
            micro-batch skips the whole window. Defaults to 1.
        clip_grad (dict, optional): As in ``OptimWrapper``; applied to
            finite gradients only. Defaults to None.

    Examples:
        >>> optim_wrapper = dict(
        ...     type='NonFiniteGuardOptimWrapper',
        ...     optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
        ...     clip_grad=dict(max_norm=5.0),
        ...     max_consecutive_skips=5)
    """


@OPTIM_WRAPPERS.register_module()
class NonFiniteGuardAmpOptimWrapper(NonFiniteGuardMixin, AmpOptimWrapper):
    """mmengine's ``AmpOptimWrapper`` (CUDA) that skips non-finite steps on
    every rank.

    The gradients are unscaled first, so the guard sees them at their true
    scale. The guard decides, and the ``GradScaler`` follows: a step that is
    finite on every rank goes through ``scaler.step``; a skipped one only
    closes the scaler's iteration with ``scaler.update()``, which backs the
    scale off when this rank's gradients overflowed and otherwise leaves it.

    Every skipped step is counted, including the fp16 overflows a dynamic
    loss scale produces by design (a few at the start, then about one each
    time the scale tries to grow, every ``growth_interval`` steps). They
    never come many in a row: each one halves the scale. A run of
    ``max_consecutive_skips`` means the scale has been divided by
    ``2 ** max_consecutive_skips`` without helping, so something else is
    wrong. With a high ``init_scale`` give ``max_consecutive_skips`` some
    room (e.g. 20); with ``dtype='bfloat16'`` no overflow is expected.

    Args:
        skip_nonfinite (bool): False turns the guard off: the wrapper is
            then mmengine's ``AmpOptimWrapper``. Defaults to True.
        max_consecutive_skips (int): How many skipped optimizer steps in a
            row stop training with :class:`NonFiniteStepError`.
            Defaults to 10.
        **kwargs: Arguments of ``AmpOptimWrapper`` (``loss_scale``,
            ``dtype``, ``use_fsdp``) and ``OptimWrapper``.
    """

    def _unscale_grads(self) -> None:
        self.loss_scaler.unscale_(self.optimizer)

    def _apply_step(self, **kwargs) -> None:
        if self.clip_grad_kwargs:
            self._clip_grad()
        self.loss_scaler.step(self.optimizer, **kwargs)
        self.loss_scaler.update(self._scale_update_param)

    def _abandon_step(self) -> None:
        self.loss_scaler.update(self._scale_update_param)
