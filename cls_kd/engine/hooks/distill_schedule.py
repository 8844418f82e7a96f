"""The hook that tells a distiller where training is, so that its stages
and per-term schedules apply."""
from typing import Optional

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from cls_kd.errors import check_number
from cls_kd.registry import HOOKS

__all__ = ['DistillScheduleHook', 'StopDistillHook', 'add_schedule_hook']


def _distiller(runner):
    model = runner.model.module if is_model_wrapper(
        runner.model) else runner.model
    return model if hasattr(model, 'set_progress') else None


def _warn_unreachable_stages(plan, runner) -> None:
    """Log a warning for each stage that starts at or after the run's end
    (``tools/train.py`` fits the stages to ``max_epochs`` before building
    the Runner; a Runner built otherwise keeps them as configured)."""
    limit = getattr(runner, f'max_{plan.by}s', None)
    for i in range(1, len(plan.stages)):
        begin = plan.stages[i - 1].end
        if limit is not None and begin >= limit:
            runner.logger.warning(
                f'Distillation stage {i} would start at {plan.by} '
                f'{begin + 1} (model.stages[{i - 1}].end={begin}) but '
                f'max_{plan.by}s={limit}: it never runs. Fit the stages '
                f'with cls_kd.apis.fit_schedulers_to_max_epochs (as '
                f'tools/train.py does) or shorten them.')


@HOOKS.register_module()
class DistillScheduleHook(Hook):
    """Hands the epoch and iteration to the distiller before every training
    step (``model.set_progress``), which picks its stage and the weights of
    its loss terms from them; ``--resume`` therefore restores the right
    stage. Logs each change of stage, and removes the logged history of
    terms that are off, so that the log never shows a stale value of a term
    that is not computed.

    ``tools/train.py`` adds this hook to every config whose model is a
    distiller; add it to ``custom_hooks`` when you build the runner
    yourself.
    """

    priority = 'NORMAL'

    def __init__(self):
        self._stage = None

    def before_train(self, runner) -> None:
        self._stage = None
        model = _distiller(runner)
        if model is not None:
            _warn_unreachable_stages(model.stage_plan, runner)

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        model = _distiller(runner)
        if model is None:
            return
        model.set_progress(runner.epoch, runner.iter)
        stage = model.stage_plan.index(model.progress)
        if stage != self._stage:
            self._stage = stage
            active = [term.name for term, _ in model.active_terms()]
            runner.logger.info(
                f'Distillation stage {stage} from epoch {runner.epoch + 1}, '
                f'iteration {runner.iter + 1}: '
                + (', '.join(active) if active else 'no distillation'))

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        model = _distiller(runner)
        if model is None or outputs is None:
            return
        scalars = runner.message_hub.log_scalars
        for name in model.wiring.names:
            if name not in outputs:
                scalars.pop(f'train/{name}', None)


@HOOKS.register_module()
class StopDistillHook(DistillScheduleHook):
    """Switch all distillation off from epoch ``stop_epoch`` on (a two-stage
    schedule; prefer the distiller's ``stages`` in new configs).

    From then on the teacher is not run at all and the student trains on its
    own loss with weight ``student_loss_weight`` (DearKD's second stage).

    Args:
        stop_epoch (int): First epoch (0-based, as ``runner.epoch``) without
            distillation, an integer >= 0.
        student_loss_weight (float): The student's own loss weight after the
            stop, finite and >= 0. Defaults to 1.0.
    """

    def __init__(self, stop_epoch: int, student_loss_weight: float = 1.0):
        super().__init__()
        self.stop_epoch = check_number('StopDistillHook.stop_epoch',
                                       stop_epoch, low=0, integer=True)
        self.student_loss_weight = check_number(
            'StopDistillHook.student_loss_weight', student_loss_weight, low=0)

    def before_train(self, runner) -> None:
        model = _distiller(runner)
        if model is not None:
            model.stage_plan.add_stop(self.stop_epoch,
                                      self.student_loss_weight)
        super().before_train(runner)


def add_schedule_hook(cfg) -> None:
    """Add :class:`DistillScheduleHook` to ``cfg.custom_hooks`` unless the
    config has it (or :class:`StopDistillHook`) already."""
    hooks = list(cfg.get('custom_hooks') or [])
    names = {'DistillScheduleHook', 'StopDistillHook'}
    if not any(str(h.get('type', '')).split('.')[-1] in names
               for h in hooks):
        hooks.append(dict(type='DistillScheduleHook'))
    cfg.custom_hooks = hooks
