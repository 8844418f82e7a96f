"""Hooks that schedule distillation over a run."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from cls_kd.registry import HOOKS

__all__ = ['StopDistillHook']


@HOOKS.register_module()
class StopDistillHook(Hook):
    """Switch all distillation off from epoch ``stop_epoch`` on.

    From then on the teacher is not run at all and the student trains on its
    own loss with weight ``student_loss_weight`` (DearKD's second stage).
    Decided at the start of every epoch, so it holds after ``--resume``.

    Args:
        stop_epoch (int): First epoch (0-based, as ``runner.epoch``) without
            distillation.
        student_loss_weight (float): The student's own loss weight after the
            stop. Defaults to 1.0.
    """

    priority = 'LOW'

    def __init__(self, stop_epoch: int, student_loss_weight: float = 1.0):
        if stop_epoch < 0:
            raise ValueError(f'stop_epoch must be >= 0, got {stop_epoch}.')
        self.stop_epoch = stop_epoch
        self.student_loss_weight = student_loss_weight

    def before_train_epoch(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        if runner.epoch >= self.stop_epoch and model.distill_enabled:
            model.distill_enabled = False
            model.student_loss_weight = self.student_loss_weight
            runner.logger.info(f'StopDistillHook: distillation is off from '
                               f'epoch {runner.epoch + 1} on.')
