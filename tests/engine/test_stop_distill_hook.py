from types import SimpleNamespace

import pytest
import torch.nn as nn

import cls_kd
from cls_kd.engine.hooks import StopDistillHook
from cls_kd.registry import HOOKS

cls_kd.register_all_modules()


class FakeDistiller(nn.Module):

    def __init__(self):
        super().__init__()
        self.distill_enabled = True
        self.student_loss_weight = 0.5


class FakeLogger:

    def __init__(self):
        self.messages = []

    def info(self, message):
        self.messages.append(message)


def runner(model=None):
    return SimpleNamespace(
        epoch=0, model=model or FakeDistiller(), logger=FakeLogger())


def test_stops_at_stop_epoch_not_before():
    hook = StopDistillHook(stop_epoch=2, student_loss_weight=1.0)
    fake = runner()
    for epoch in (0, 1):
        fake.epoch = epoch
        hook.before_train_epoch(fake)
        assert fake.model.distill_enabled
        assert fake.model.student_loss_weight == 0.5
    assert fake.logger.messages == []
    fake.epoch = 2
    hook.before_train_epoch(fake)
    assert not fake.model.distill_enabled
    assert fake.model.student_loss_weight == 1.0
    assert fake.logger.messages == [
        'StopDistillHook: distillation is off from epoch 3 on.'
    ]
    fake.epoch = 3
    hook.before_train_epoch(fake)
    assert not fake.model.distill_enabled
    assert len(fake.logger.messages) == 1


def test_resumed_after_stop_epoch():
    hook = StopDistillHook(stop_epoch=2, student_loss_weight=0.0)
    fake = runner()
    fake.epoch = 5
    hook.before_train_epoch(fake)
    assert not fake.model.distill_enabled
    assert fake.model.student_loss_weight == 0.0


def test_unwraps_model_wrapper():
    distiller = FakeDistiller()
    fake = runner(nn.DataParallel(distiller))
    StopDistillHook(stop_epoch=0).before_train_epoch(fake)
    assert not distiller.distill_enabled
    assert distiller.student_loss_weight == 1.0


def test_built_from_registry_and_validates():
    hook = HOOKS.build(dict(type='StopDistillHook', stop_epoch=3))
    assert isinstance(hook, StopDistillHook) and hook.stop_epoch == 3
    with pytest.raises(ValueError, match='stop_epoch must be >= 0, got -1'):
        StopDistillHook(stop_epoch=-1)
