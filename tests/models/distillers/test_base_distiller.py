"""The distiller family: label-free distillation, stages and term
schedules, run-time errors, reserved names."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.optim import OptimWrapper
from mmpretrain.structures import DataSample

import cls_kd
from cls_kd.models.distillers import (
    BaseDistiller,
    ClassificationDistiller,
    DistillerConfigError,
    LabelFreeDistiller,
)
from cls_kd.models.losses import kd_loss
from cls_kd.registry import MODELS

cls_kd.register_all_modules()

MSE = dict(type='PixelReconstructionLoss', criterion='L2')
KD = dict(type='KDLoss', inputs=dict(logits_s='logits_s',
                                     logits_t='logits_t'))


@MODELS.register_module(name='DistillerTestFailingLoss', force=True)
class FailingLoss(nn.Module):
    """Fails like a CUDA kernel would, once ``fail`` is set."""

    def __init__(self):
        super().__init__()
        self.fail = False

    def forward(self, value):
        if self.fail:
            raise RuntimeError('CUDA error: an illegal memory access')
        return value.float().mean() * 0


def teacher(tiny_vit):
    return dict(config=tiny_vit(48, 3), checkpoint=None, random_init=True)


def label_free(tiny_vit, **kwargs):
    torch.manual_seed(0)
    cfg = dict(
        type='LabelFreeDistiller',
        student=tiny_vit(head=False),
        teacher=teacher(tiny_vit),
        taps=dict(
            s_cls=dict(path='ln1', selector='cls_token'),
            t_cls=dict(model='teacher', path='backbone.ln1',
                       selector='cls_token')),
        connectors=dict(
            proj=dict(type='LinearConnector', in_channels=32,
                      out_channels=48)),
        losses=dict(
            loss_cls_align=dict(**MSE, inputs=dict(pred='proj(s_cls)',
                                                   target='t_cls'))))
    cfg.update(kwargs)
    return MODELS.build(cfg)


def classification(tiny_vit, **kwargs):
    torch.manual_seed(0)
    cfg = dict(
        type='ClassificationDistiller',
        student=tiny_vit(),
        teacher=teacher(tiny_vit),
        data_preprocessor=dict(num_classes=10, mean=[0.] * 3, std=[1.] * 3),
        taps=dict(
            s_tok=dict(path='backbone.layers.1'),
            t_tok=dict(model='teacher', path='backbone.layers.1')),
        connectors=dict(
            proj=dict(type='LinearConnector', in_channels=32,
                      out_channels=48)),
        losses=dict(
            loss_mse=dict(**MSE, inputs=dict(pred='proj(s_tok)',
                                             target='t_tok')),
            loss_kd=KD))
    cfg.update(kwargs)
    return MODELS.build(cfg)


def unlabelled(n=2):
    torch.manual_seed(1)
    return torch.randn(n, 3, 32, 32), [DataSample() for _ in range(n)]


def calls(module):
    seen = []
    module.register_forward_pre_hook(lambda *args: seen.append(1))
    return seen


# ------------------------------------------------------------ label-free
def test_label_free_loss_without_labels(tiny_vit):
    model = label_free(tiny_vit)
    assert isinstance(model, BaseDistiller)
    assert not isinstance(model, ClassificationDistiller)
    model.train()
    inputs, data_samples = unlabelled()
    assert all('gt_label' not in s for s in data_samples)
    losses = model.loss(inputs, data_samples)
    assert list(losses) == ['loss_cls_align']  # no supervised loss
    with torch.no_grad():
        expected = F.mse_loss(
            model.connectors['proj'](model.student(inputs)[-1]),
            model.teachers['teacher'].backbone(inputs)[-1])
    torch.testing.assert_close(losses['loss_cls_align'], expected)


def test_label_free_train_step_with_unlabelled_samples(tiny_vit):
    model = label_free(tiny_vit)
    before = model.student.patch_embed.projection.weight.clone()
    data = dict(
        inputs=[torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
                for _ in range(2)],
        data_samples=[DataSample() for _ in range(2)])
    log_vars = model.train_step(
        data, OptimWrapper(torch.optim.SGD(model.parameters(), lr=1.0)))
    assert set(log_vars) == {'loss', 'loss_cls_align'}
    assert not torch.equal(before, model.student.patch_embed.projection.weight)
    assert all(p.grad is None
               for p in model.teachers['teacher'].parameters())


def test_label_free_has_no_label_sources(tiny_vit):
    with pytest.raises(DistillerConfigError,
                       match="no source 'labels'") as info:
        label_free(tiny_vit, losses=dict(
            loss_x=dict(type='DistillerTestFailingLoss',
                        inputs=dict(value='labels'))))
    assert "'feats_s'" in str(info.value)


def test_label_free_predict_and_tensor_give_features(tiny_vit):
    model = label_free(tiny_vit).eval()
    inputs, data_samples = unlabelled(3)
    with torch.no_grad():
        expected = model.student(inputs)
        feats = model(inputs, mode='tensor')
        predictions = model(inputs, data_samples, mode='predict')
    assert torch.equal(feats[-1], expected[-1])
    torch.testing.assert_close(
        torch.stack([p.feat for p in predictions]), expected[-1])
    assert set(k.split('.')[0] for k in model.state_dict()) == {
        'student', 'connectors'}


# ------------------------------------------------------ stages, schedules
def test_needs_progress_in_training(tiny_vit):
    model = classification(
        tiny_vit, stages=[dict(end=2), dict(distill=False)])
    model.train()
    with pytest.raises(RuntimeError, match='DistillScheduleHook'):
        model.loss(*unlabelled())
    model.eval()  # evaluation does not need it
    model.loss(*labelled())


def labelled():
    inputs, samples = unlabelled()
    return inputs, [s.set_gt_label(k) for s, k in zip(samples, (3, 7))]


def test_stage_runs_only_its_losses(tiny_vit):
    model = classification(
        tiny_vit, stages=[dict(end=1, losses=['loss_mse']), dict()])
    model.train()
    model.set_progress(epoch=0, iter=3)
    head = calls(model.teachers['teacher'].head)
    losses = model.loss(*labelled())
    assert set(losses) == {'loss_cls', 'loss_mse'}
    assert head == []  # the teacher stops after its tap: logits unused
    model.set_progress(epoch=1, iter=6)
    assert set(model.loss(*labelled())) == {'loss_cls', 'loss_mse',
                                            'loss_kd'}
    assert len(head) == 1


def test_term_off_teacher_not_run_and_params_touched(tiny_vit):
    model = classification(
        tiny_vit, taps={}, connectors=dict(
            proj=dict(type='LinearConnector', in_channels=10,
                      out_channels=10, identity_if_equal=False)),
        losses=dict(loss_kd=dict(
            type='KDLoss', schedule=dict(type='window', end=2),
            inputs=dict(logits_s='proj(logits_s)', logits_t='logits_t'))))
    model.train()
    teacher_calls = calls(model.teachers['teacher'].backbone)
    inputs, data_samples = labelled()
    model.set_progress(epoch=1, iter=0)
    assert 'loss_kd' in model.loss(inputs, data_samples)
    assert len(teacher_calls) == 1
    model.set_progress(epoch=2, iter=0)
    losses = model.loss(inputs, data_samples)
    assert list(losses) == ['loss_cls']
    assert len(teacher_calls) == 1  # not run
    losses['loss_cls'].backward()
    grad = model.connectors['proj'].proj.weight.grad
    assert grad is not None and torch.count_nonzero(grad) == 0


def test_scheduled_factor_scales_term(tiny_vit):
    model = classification(
        tiny_vit, losses=dict(loss_kd=dict(
            KD, schedule=dict(type='step', milestones=[1], gamma=0.25))),
        taps={}, connectors={})
    inputs, data_samples = labelled()
    model.set_progress(epoch=1, iter=0)
    losses = model.loss(inputs, data_samples)
    with torch.no_grad():
        full = kd_loss(model.student(inputs),
                       model.teachers['teacher'](inputs), 1.0)
    torch.testing.assert_close(losses['loss_kd'], 0.25 * full)


def test_epoch_source_comes_from_progress(tiny_vit):
    model = label_free(tiny_vit, losses=dict(loss_probe=dict(
        type='DistillerTestValueProbe', inputs=dict(value='epoch'))))
    model.set_progress(epoch=7, iter=70)
    model.loss(*unlabelled())
    assert model.losses['loss_probe'].seen[-1] == 7


@MODELS.register_module(name='DistillerTestValueProbe', force=True)
class ValueProbe(nn.Module):

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, value):
        self.seen.append(value)
        return torch.zeros(())


# ------------------------------------------------------------ errors
def test_runtime_error_keeps_type_with_context(tiny_vit):
    model = classification(
        tiny_vit, taps={}, connectors={},
        losses=dict(loss_fail=dict(type='DistillerTestFailingLoss',
                                   inputs=dict(value='logits_s'))))
    model.losses['loss_fail'].fail = True
    with pytest.raises(RuntimeError) as info:
        model.loss(*labelled())
    assert type(info.value) is RuntimeError
    assert not isinstance(info.value, DistillerConfigError)
    assert "Loss 'loss_fail' (FailingLoss) failed on value='logits_s' " \
        'Tensor(2, 10).' in info.value.__notes__


def test_build_time_failure_is_config_error(tiny_vit):
    with pytest.raises(DistillerConfigError) as info:
        classification(tiny_vit, losses=dict(loss_mse=dict(
            **MSE, inputs=dict(pred='s_tok', target='t_tok'))))
    message = str(info.value)
    assert message.startswith('Dry run of the distiller at build time')
    assert "pred='s_tok' Tensor(2, 17, 32)" in message


@pytest.mark.parametrize('name', ['t', 's', 'labels', 'student', 'epoch',
                                  'soft_labels', 'my-teacher'])
def test_reserved_teacher_names(tiny_vit, name):
    with pytest.raises(DistillerConfigError,
                       match=f'Teacher name {name!r} is not allowed'):
        classification(tiny_vit, teacher=None, taps={}, connectors={},
                       losses={}, teachers={name: teacher(tiny_vit)})


def test_label_free_reserves_feats_s(tiny_vit):
    with pytest.raises(DistillerConfigError, match='reserved'):
        label_free(tiny_vit, taps=dict(feats_s=dict(path='ln1')),
                   connectors={}, losses={})


def test_user_subclass_of_base():
    """A distiller for a new task overrides four methods, nothing else."""

    class MeanFeatureDistiller(LabelFreeDistiller):

        def forward_student(self, inputs):
            return dict(feats_s=self.features(inputs)[-1].mean(1))

    assert MeanFeatureDistiller.loss is BaseDistiller.loss


def test_batches_go_to_the_device_without_blocking(tiny_vit):
    """mmpretrain's preprocessor copies each image and label with a wait
    for the GPU; the distiller's does not wait (the student's own module,
    shared)."""
    from mmpretrain.models import ClsDataPreprocessor
    assert ClsDataPreprocessor()._non_blocking is False
    model = classification(tiny_vit)
    assert model.data_preprocessor._non_blocking is True
    assert model.student.data_preprocessor is model.data_preprocessor
