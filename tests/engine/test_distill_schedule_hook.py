import re
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmpretrain.structures import DataSample

import cls_kd
from cls_kd.engine.hooks import (
    DistillScheduleHook,
    StopDistillHook,
    add_schedule_hook,
)
from cls_kd.models.distillers import DistillerConfigError
from cls_kd.registry import HOOKS, MODELS

cls_kd.register_all_modules()


class FakeLogger:

    def __init__(self):
        self.messages = []

    def info(self, message):
        self.messages.append(message)


@pytest.fixture
def distiller(tiny_vit):
    torch.manual_seed(0)
    return MODELS.build(
        dict(
            type='ClassificationDistiller',
            student=tiny_vit(),
            teacher=dict(config=tiny_vit(48, 3), checkpoint=None,
                         random_init=True),
            data_preprocessor=dict(num_classes=10),
            losses=dict(
                loss_kd=dict(
                    type='KDLoss',
                    inputs=dict(logits_s='logits_s', logits_t='logits_t'))),
            student_loss_weight=0.5))


def runner(model, hub=None):
    return SimpleNamespace(
        epoch=0, iter=0, model=model, logger=FakeLogger(),
        message_hub=hub or MessageHub('distill-hook-test'))


def step(hook, fake, epoch, it):
    fake.epoch, fake.iter = epoch, it
    hook.before_train_iter(fake, it)


def test_hands_progress_and_logs_stage_changes(distiller):
    distiller.stage_plan.add_stop(2, 1.0)
    hook, fake = DistillScheduleHook(), runner(distiller)
    hook.before_train(fake)
    for epoch, it in [(0, 0), (0, 1), (1, 5), (2, 10), (2, 11)]:
        step(hook, fake, epoch, it)
        assert distiller.progress.epoch == epoch
        assert distiller.progress.iter == it
    assert fake.logger.messages == [
        'Distillation stage 0 from epoch 1, iteration 1: loss_kd',
        'Distillation stage 1 from epoch 3, iteration 11: no distillation',
    ]


def test_resume_inside_second_stage(distiller):
    distiller.stage_plan.add_stop(2, 1.0)
    hook, fake = DistillScheduleHook(), runner(nn.DataParallel(distiller))
    hook.before_train(fake)
    step(hook, fake, 5, 50)
    assert not distiller.distill_enabled
    assert distiller.current_stage().student_loss_weight == 1.0


def test_off_terms_leave_the_log(distiller):
    hub = MessageHub('distill-hook-log-test')
    hub.update_scalar('train/loss_kd', 3.0)
    hub.update_scalar('train/loss_cls', 1.0)
    hook, fake = DistillScheduleHook(), runner(distiller, hub)
    hook.after_train_iter(fake, 0, outputs=dict(loss_kd=3.0, loss_cls=1.0))
    assert 'train/loss_kd' in hub.log_scalars
    hook.after_train_iter(fake, 1, outputs=dict(loss_cls=1.0))
    assert 'train/loss_kd' not in hub.log_scalars
    assert 'train/loss_cls' in hub.log_scalars


def test_stop_distill_hook_becomes_a_stage(distiller):
    hook = StopDistillHook(stop_epoch=2, student_loss_weight=1.0)
    fake = runner(distiller)
    hook.before_train(fake)
    inputs = torch.randn(2, 3, 32, 32)
    samples = [DataSample().set_gt_label(k) for k in (1, 2)]
    distiller.train()
    step(hook, fake, 1, 3)
    # Weighted by 0.5 until then: the unweighted value is logged too.
    assert set(distiller.loss(inputs, samples)) == {
        'loss_cls', 'cls_unweighted', 'loss_kd'}
    step(hook, fake, 2, 6)
    losses = distiller.loss(inputs, samples)
    assert set(losses) == {'loss_cls'}
    with torch.no_grad():
        ce = nn.functional.cross_entropy(distiller.student(inputs),
                                         torch.tensor([1, 2]))
    torch.testing.assert_close(losses['loss_cls'], ce)  # weight 1.0 now


def test_stop_hook_built_from_registry_and_validates():
    hook = HOOKS.build(dict(type='StopDistillHook', stop_epoch=3))
    assert isinstance(hook, DistillScheduleHook) and hook.stop_epoch == 3
    with pytest.raises(DistillerConfigError, match=re.escape(
            'StopDistillHook.stop_epoch must be an integer >= 0, got -1.')):
        StopDistillHook(stop_epoch=-1)
    with pytest.raises(DistillerConfigError, match=re.escape(
            'StopDistillHook.student_loss_weight must be a finite number >= '
            '0, got nan.')):
        StopDistillHook(stop_epoch=2, student_loss_weight=float('nan'))


class WarningLogger(FakeLogger):

    def warning(self, message):
        self.messages.append(message)


@pytest.mark.parametrize('max_epochs, warned', [(3, False), (2, True)])
def test_stage_beyond_the_run_is_reported(distiller, max_epochs, warned):
    """A Runner built without tools/train.py (whose fitting drops such a
    stage) warns that the stage never runs."""
    distiller.stage_plan.add_stop(2, 1.0)
    fake = runner(distiller)
    fake.logger, fake.max_epochs = WarningLogger(), max_epochs
    DistillScheduleHook().before_train(fake)
    expected = ('Distillation stage 1 would start at epoch 3 '
                '(model.stages[0].end=2) but max_epochs=2: it never runs.')
    messages = fake.logger.messages
    if warned:
        assert len(messages) == 1 and messages[0].startswith(expected)
    else:
        assert messages == []


def test_non_distiller_is_ignored():
    model = nn.Linear(2, 2)
    hook, fake = DistillScheduleHook(), runner(model)
    hook.before_train(fake)
    step(hook, fake, 0, 0)
    hook.after_train_iter(fake, 0, outputs=dict(loss=1.0))
    assert not hasattr(model, 'progress')


@pytest.mark.parametrize('hooks, expected', [
    (None, ['DistillScheduleHook']),
    ([dict(type='EMAHook')], ['EMAHook', 'DistillScheduleHook']),
    ([dict(type='StopDistillHook', stop_epoch=2)], ['StopDistillHook']),
    ([dict(type='cls_kd.DistillScheduleHook')],
     ['cls_kd.DistillScheduleHook']),
])
def test_add_schedule_hook(hooks, expected):
    cfg = Config(dict(custom_hooks=hooks) if hooks is not None else {})
    add_schedule_hook(cfg)
    assert [h['type'] for h in cfg.custom_hooks] == expected
