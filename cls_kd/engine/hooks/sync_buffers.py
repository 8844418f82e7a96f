"""Equal buffers (BatchNorm statistics) on every rank whenever the model is
validated or saved, so that in multi-process runs the validation score, the
checkpoint and the exported student agree."""
from typing import List, Optional

import torch
from mmengine.dist import all_reduce_params
from mmengine.hooks import CheckpointHook, SyncBuffersHook
from mmengine.model import BaseAveragedModel, is_model_wrapper

from cls_kd.registry import HOOKS

__all__ = ['SyncStudentBuffersHook']


def _saves_this_iter(hook, runner) -> bool:
    """Whether ``hook`` is a checkpoint hook that saves in this iteration's
    ``after_train_iter`` (``CheckpointHook``'s own rule)."""
    if not isinstance(hook, CheckpointHook) or hook.by_epoch:
        return False
    return hook.every_n_train_iters(runner, hook.interval, hook.save_begin) \
        or (hook.save_last and hook.is_last_train_iter(runner))


def _float_buffers(runner) -> List[torch.Tensor]:
    """The floating-point buffers of ``runner.model``, of the averaged
    copies of its EMA hooks and of its ``train_mode`` teachers, in the same
    order on every rank."""
    model = runner.model.module if is_model_wrapper(
        runner.model) else runner.model
    teachers = getattr(model, 'teachers', None)
    # Sorted: a set of names iterates in a per-process (hash seed) order.
    names = sorted(getattr(teachers, 'train_mode', ()))
    modules = [runner.model] + [
        hook.ema_model.module for hook in runner.hooks
        if isinstance(getattr(hook, 'ema_model', None), BaseAveragedModel)
    ] + [teachers[name] for name in names]
    return [
        buffer for module in modules for buffer in module.buffers()
        if buffer.is_floating_point()
    ]


@HOOKS.register_module()
class SyncStudentBuffersHook(SyncBuffersHook):
    """Averages the floating-point buffers of the trained model (BatchNorm
    running statistics) over the ranks before each validation and each
    checkpoint.

    DDP keeps the ranks' weights equal (it averages their gradients), not
    their buffers: mmengine wraps the model with ``broadcast_buffers=False``,
    so each rank's BatchNorm statistics follow its own batches only. Without
    a sync each rank validates its share of the validation set with its own
    statistics, and the checkpoint (written by rank 0) holds rank 0's: the
    validation score is then neither the checkpoint's nor the exported
    student's.

    After a sync every rank holds the average over the ranks, which is what
    validation uses and what the checkpoint holds (the statistics of all
    ranks' batches rather than of one rank's share). mmengine's
    ``SyncBuffersHook`` averages at the end of each training epoch (and
    before a validation that follows none); this hook also syncs:

    - before a checkpoint saved by iteration (a ``CheckpointHook`` with
      ``by_epoch=False``, which saves in ``after_train_iter``, before any
      validation of that iteration runs);
    - the buffers of an ``EMAHook``'s averaged copy, which the hook swaps
      into the validated model and into the checkpoint;

    and it averages floating-point buffers only. Integer and boolean
    buffers (``num_batches_tracked``, position indices, masks) are equal on
    every rank already: they count training steps, which DDP keeps in step,
    or are constants; an average would turn a count into a fraction.

    Frozen teachers in eval mode never change their buffers (they sit
    outside the distiller's module tree: neither DDP nor a checkpoint holds
    them). A ``train_mode=True`` teacher's BatchNorm statistics follow each
    rank's batches like the student's; they are averaged too, since a
    validation metric that runs the teacher (``TeacherAgreementMetric``)
    uses them. Its training is unchanged: in train mode BatchNorm
    normalises with the batch's statistics.

    Its priority (``NORMAL``) runs it before ``CheckpointHook``
    (``VERY_LOW``). Single-process runs skip it.
    """

    def __init__(self) -> None:
        super().__init__()
        self._stale = False  # the buffers changed since the last sync

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        """Mark the buffers stale; sync them if a checkpoint is saved now.

        Args:
            runner (Runner): The runner of the training process.
            batch_idx (int): The index of the batch in the epoch.
            data_batch (dict, optional): The batch. Unused.
            outputs (dict, optional): The step's outputs. Unused.
        """
        self._stale = True
        if any(_saves_this_iter(hook, runner) for hook in runner.hooks):
            self._sync(runner)

    def after_train_epoch(self, runner) -> None:
        """Sync before the epoch's checkpoint and validation.

        Args:
            runner (Runner): The runner of the training process.
        """
        self._sync(runner)

    def before_val_epoch(self, runner) -> None:
        """Sync if training changed the buffers since the last sync.

        Args:
            runner (Runner): The runner of the training process.
        """
        self._sync(runner)

    def _sync(self, runner) -> None:
        if self.distributed and self._stale:
            all_reduce_params(_float_buffers(runner), op='mean')
        self._stale = False

