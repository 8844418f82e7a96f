import copy
import gc
import re

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmpretrain.structures import DataSample

import cls_kd
from cls_kd.models.distillers import DistillerConfigError
from cls_kd.models.losses import kd_loss
from cls_kd.registry import MODELS

cls_kd.register_all_modules()

NUM_CLASSES = 10
PREPROCESSOR = dict(
    num_classes=NUM_CLASSES, mean=[0., 0., 0.], std=[1., 1., 1.])
MSE = dict(type='PixelReconstructionLoss', criterion='L2')
# Student block 1 / teacher block 1 tokens: (B, 1 + 16, 32) / (B, 17, 48).
TOKEN_TAPS = dict(
    s_tok=dict(path='backbone.layers.1'),
    t_tok=dict(model='teacher', path='backbone.layers.1'))
PROJ = dict(proj=dict(type='LinearConnector', in_channels=32,
                      out_channels=48))


@MODELS.register_module(name='DistillerTestProbeLoss', force=True)
class ProbeLoss(nn.Module):
    """Records what the distiller feeds it; contributes zero."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, value):
        self.seen.append(value.detach().clone())
        return torch.zeros(())


@MODELS.register_module(name='DistillerTestTwoKeyConnector', force=True)
class TwoKeyConnector(nn.Module):
    """Returns two entries from one projection and counts its calls."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.linear = nn.Linear(in_channels, out_channels)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        y = self.linear(x)
        return dict(a=y, b=2 * y)


def vit(width=32, depth=2, img_size=32, **backbone):
    return dict(
        type='ImageClassifier',
        backbone=dict(
            type='VisionTransformer',
            arch=dict(
                embed_dims=width,
                num_layers=depth,
                num_heads=2,
                feedforward_channels=2 * width),
            img_size=img_size,
            patch_size=8,
            **backbone),
        neck=None,
        head=dict(
            type='VisionTransformerClsHead',
            num_classes=NUM_CLASSES,
            in_channels=width))


def teacher_spec(**kwargs):
    return dict(config=vit(48, 3, **kwargs), checkpoint=None,
                random_init=True)


def build(**kwargs):
    torch.manual_seed(0)
    cfg = dict(
        type='ClassificationDistiller',
        student=vit(),
        teacher=teacher_spec(),
        data_preprocessor=PREPROCESSOR)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def batch(labels=(3, 7)):
    torch.manual_seed(1)
    inputs = torch.randn(len(labels), 3, 32, 32)
    return inputs, [DataSample().set_gt_label(k) for k in labels]


def kd_model(**kwargs):
    return build(
        losses=dict(
            loss_kd=dict(
                type='KDLoss',
                inputs=dict(logits_s='logits_s', logits_t='logits_t'))),
        **kwargs)


def probe_model(value, **kwargs):
    return build(
        losses=dict(
            loss_probe=dict(
                type='DistillerTestProbeLoss', inputs=dict(value=value))),
        **kwargs)


def mimic_model(**kwargs):
    """MSE between projected student tokens and teacher tokens + KD."""
    return build(
        taps=TOKEN_TAPS,
        connectors=PROJ,
        losses=dict(
            loss_mse=dict(**MSE, inputs=dict(pred='proj(s_tok)',
                                             target='t_tok')),
            loss_kd=dict(
                type='KDLoss',
                inputs=dict(logits_s='logits_s', logits_t='logits_t'))),
        **kwargs)


def counter(module):
    """Counts calls of ``module`` (a pre-hook: it runs before a tap on the
    same module can stop the forward)."""
    calls = []
    module.register_forward_pre_hook(lambda *args: calls.append(1))
    return calls


def teacher_params(model):
    return list(model.teachers['teacher'].parameters())


# ------------------------------------------------------------ build errors
def test_unknown_tap_path():
    with pytest.raises(DistillerConfigError) as info:
        build(taps=dict(s0=dict(path='backbone.layer.0')))
    message = str(info.value)
    assert "Tap 's0' on student: no module 'backbone.layer.0'" in message
    assert "'backbone.layers.0'" in message


def test_tap_on_unknown_model():
    with pytest.raises(DistillerConfigError,
                       match="model 'techer' is neither"):
        build(taps=dict(t0=dict(model='techer', path='backbone')))


def test_loss_input_without_source():
    with pytest.raises(DistillerConfigError) as info:
        build(
            taps=TOKEN_TAPS,
            losses=dict(
                loss_kd=dict(
                    type='KDLoss',
                    inputs=dict(logits_s='logits_s', logits_t='t_logits'))))
    message = str(info.value)
    assert "Loss 'loss_kd', input logits_t='t_logits': no source " \
        "'t_logits'" in message
    for source in ('logits_s', 'logits_t', 'logits_teacher', 's_tok',
                   't_tok', 'labels', 'soft_labels'):
        assert repr(source) in message


def test_missing_forward_argument():
    with pytest.raises(DistillerConfigError,
                       match=r"'loss_kd' \(KDLoss.forward takes \['logits_s', "
                       r"'logits_t'\]\): missing inputs \['logits_t'\], "
                       r'unknown inputs \[\]'):
        build(
            losses=dict(
                loss_kd=dict(type='KDLoss', inputs=dict(logits_s='logits_s'))))


def test_unknown_forward_argument():
    with pytest.raises(DistillerConfigError,
                       match=r"missing inputs \[\], unknown inputs "
                       r"\['labels'\]"):
        build(
            losses=dict(
                loss_kd=dict(
                    type='KDLoss',
                    inputs=dict(
                        logits_s='logits_s',
                        logits_t='logits_t',
                        labels='labels'))))


def test_unknown_connector():
    with pytest.raises(DistillerConfigError,
                       match=r"input pred='prj\(s_tok\)': no connector "
                       r"'prj'. Connectors: \['proj'\]"):
        build(
            taps=TOKEN_TAPS,
            connectors=PROJ,
            losses=dict(
                loss_mse=dict(**MSE, inputs=dict(pred='prj(s_tok)',
                                                 target='t_tok'))))


def test_unparsable_input():
    with pytest.raises(DistillerConfigError, match="Loss 'loss_mse'.*"
                       'missing'):
        build(
            taps=TOKEN_TAPS,
            connectors=PROJ,
            losses=dict(
                loss_mse=dict(**MSE, inputs=dict(pred='proj(s_tok',
                                                 target='t_tok'))))


def test_loss_name_must_start_with_loss():
    with pytest.raises(DistillerConfigError,
                       match="Loss name 'kd' must start with \"loss\""):
        build(
            losses=dict(
                kd=dict(
                    type='KDLoss',
                    inputs=dict(logits_s='logits_s', logits_t='logits_t'))))


def test_shape_mismatch_found_by_dry_run():
    with pytest.raises(DistillerConfigError) as info:
        build(
            taps=TOKEN_TAPS,
            losses=dict(
                loss_mse=dict(**MSE, inputs=dict(pred='s_tok',
                                                 target='t_tok'))))
    message = str(info.value)
    assert message.startswith('Dry run of the distiller at build time')
    assert "Loss 'loss_mse' (PixelReconstructionLoss)" in message
    assert "pred='s_tok' Tensor(2, 17, 32)" in message
    assert "target='t_tok' Tensor(2, 17, 48)" in message


def test_teacher_input_size_checked_at_build():
    with pytest.raises(DistillerConfigError,
                       match='built for 64x64 images but the batch is '
                       '32x32'):
        kd_model(teacher=teacher_spec(img_size=64), input_size=32)


def test_teacher_input_size_checked_without_dry_run():
    model = kd_model(
        teacher=teacher_spec(img_size=64), input_size=32, dry_run=False)
    with pytest.raises(DistillerConfigError, match='built for 64x64'):
        model.loss(*batch())


def test_tap_never_fired_on_teacher():
    # The teacher's forward never calls its own data preprocessor.
    with pytest.raises(DistillerConfigError,
                       match=r"Teacher 'teacher': taps "
                       r"\['t_pre:data_preprocessor'\] never fired"):
        kd_model(
            taps=dict(t_pre=dict(model='teacher', path='data_preprocessor')))


@pytest.mark.parametrize('owner', ['student', 'teacher'])
def test_loss_input_from_tap_never_fired(owner):
    with pytest.raises(DistillerConfigError,
                       match="Dry run.*Source 'pre' was not produced"):
        probe_model(
            'pre', taps=dict(pre=dict(model=owner, path='data_preprocessor')))


# ---------------------------------------------------------------- teacher
def test_teacher_outside_module_tree():
    model = mimic_model()
    teacher = model.teachers['teacher']
    own = {id(p) for p in model.parameters()}
    assert not own & {id(p) for p in teacher.parameters()}
    assert all(not p.requires_grad for p in teacher.parameters())
    keys = list(model.state_dict())
    assert keys and all(
        k.startswith(('student.', 'connectors.', 'data_preprocessor.'))
        for k in keys)
    student_and_connector = sum(
        p.numel() for p in [*model.student.parameters(),
                            *model.connectors.parameters()])
    assert sum(p.numel() for p in model.parameters()) == \
        student_and_connector


def test_train_keeps_teacher_in_eval():
    model = mimic_model()
    model.train()
    assert model.training and model.student.training
    assert model.connectors['proj'].training
    assert not any(m.training for m in model.teachers['teacher'].modules())
    model.eval()
    model.train()
    assert not model.teachers['teacher'].training


def test_backward_reaches_student_and_connector_only():
    model = mimic_model()
    model.train()
    losses = model.loss(*batch())
    assert set(losses) == {'loss_cls', 'loss_mse', 'loss_kd'}
    sum(losses.values()).backward()
    assert all(p.grad is None for p in teacher_params(model))
    qkv = model.student.backbone.layers[0].attn.qkv.weight
    assert qkv.grad is not None and qkv.grad.abs().sum() > 0
    proj = model.connectors['proj'].proj.weight
    assert proj.grad is not None and proj.grad.abs().sum() > 0


def test_logits_t_runs_teacher_with_head():
    model = kd_model()
    model.train()
    head_calls = counter(model.teachers['teacher'].head)
    inputs, data_samples = batch()
    losses = model.loss(inputs, data_samples)
    assert len(head_calls) == 1
    with torch.no_grad():
        expected = kd_loss(
            model.student(inputs), model.teachers['teacher'](inputs), 1.0)
    torch.testing.assert_close(losses['loss_kd'], expected)


def test_teacher_stops_after_last_tap():
    model = build(
        taps=dict(
            s_tok=dict(path='backbone.layers.0'),
            t_tok=dict(model='teacher', path='backbone.layers.0')),
        connectors=PROJ,
        losses=dict(
            loss_mse=dict(**MSE, inputs=dict(pred='proj(s_tok)',
                                             target='t_tok'))))
    teacher = model.teachers['teacher']
    first, later = counter(teacher.backbone.layers[0]), counter(
        teacher.backbone.layers[1])
    head = counter(teacher.head)
    losses = model.loss(*batch())
    assert len(first) == 1
    assert later == [] and head == []
    assert losses['loss_mse'] > 0


def test_teacher_head_tap_without_logits():
    # A tap on the teacher's head fires although no loss reads logits_t.
    model = probe_model(
        't_pre_logits',
        taps=dict(
            t_pre_logits=dict(
                model='teacher', path='head.layers.head', capture='input')))
    inputs, data_samples = batch()
    model.loss(inputs, data_samples)
    with torch.no_grad():
        cls_token = model.teachers['teacher'].backbone(inputs)[-1]
    torch.testing.assert_close(model.losses['loss_probe'].seen[-1],
                               cls_token)


def test_teacher_runs_to_the_end_when_logits_needed():
    model = mimic_model()
    later = counter(model.teachers['teacher'].backbone.layers[2])
    model.loss(*batch())
    assert len(later) == 1


# -------------------------------------------------------- teacher inputs
def teacher_input_probe(student_pre, teacher_pre):
    model = probe_model(
        't_in',
        teacher=dict(teacher_spec(), data_preprocessor=teacher_pre),
        taps=dict(
            t_in=dict(
                model='teacher', path='backbone.patch_embed',
                capture='input')),
        data_preprocessor=dict(num_classes=NUM_CLASSES, **student_pre))
    inputs, data_samples = batch()
    model.loss(inputs, data_samples)
    return inputs, model.losses['loss_probe'].seen[-1]


def channels(values):
    return torch.tensor(values).view(1, 3, 1, 1)


def test_teacher_input_renormalised():
    s_mean, s_std = [10., 20., 30.], [2., 4., 5.]
    t_mean, t_std = [1., 2., 3.], [0.5, 1., 2.]
    inputs, seen = teacher_input_probe(
        dict(mean=s_mean, std=s_std), dict(mean=t_mean, std=t_std))
    expected = (inputs * channels(s_std) + channels(s_mean) -
                channels(t_mean)) / channels(t_std)
    torch.testing.assert_close(seen, expected)


def test_teacher_input_unchanged_for_same_normalisation():
    norm = dict(mean=[10., 20., 30.], std=[2., 4., 5.])
    inputs, seen = teacher_input_probe(norm, norm)
    assert torch.equal(seen, inputs)


def test_teacher_input_channel_flip():
    # Student converts BGR to RGB, teacher takes BGR with the same
    # statistics in BGR order: the teacher sees the channels reversed.
    inputs, seen = teacher_input_probe(
        dict(mean=[10., 20., 30.], std=[2., 4., 5.], to_rgb=True),
        dict(mean=[30., 20., 10.], std=[5., 4., 2.], to_rgb=False))
    torch.testing.assert_close(seen, inputs.flip(1))


def test_teacher_input_channel_flip_and_renormalise():
    s_mean, s_std = [10., 20., 30.], [2., 4., 5.]
    t_mean, t_std = [1., 2., 3.], [1., 2., 4.]
    inputs, seen = teacher_input_probe(
        dict(mean=s_mean, std=s_std, to_rgb=True),
        dict(mean=t_mean, std=t_std))
    raw_rgb = inputs * channels(s_std) + channels(s_mean)
    expected = (raw_rgb.flip(1) - channels(t_mean)) / channels(t_std)
    torch.testing.assert_close(seen, expected)


# ---------------------------------------------------------------- sources
def labels_model():
    return build(
        losses=dict(
            loss_hard=dict(
                type='DistillerTestProbeLoss', inputs=dict(value='labels')),
            loss_soft=dict(
                type='DistillerTestProbeLoss',
                inputs=dict(value='soft_labels'))))


def test_labels_from_soft_scores():
    model = labels_model()
    scores = torch.softmax(torch.randn(3, NUM_CLASSES) * 3, dim=1)
    data_samples = [DataSample().set_gt_score(s) for s in scores]
    model.loss(torch.randn(3, 3, 32, 32), data_samples)
    hard = model.losses['loss_hard'].seen[-1]
    assert torch.equal(hard, scores.argmax(dim=1))
    assert torch.equal(model.losses['loss_soft'].seen[-1], scores)


def test_soft_labels_from_hard_labels():
    model = labels_model()
    inputs, data_samples = batch(labels=(3, 7, 0))
    model.loss(inputs, data_samples)
    assert torch.equal(model.losses['loss_hard'].seen[-1],
                       torch.tensor([3, 7, 0]))
    expected = torch.zeros(3, NUM_CLASSES)
    expected[0, 3] = expected[1, 7] = expected[2, 0] = 1
    assert torch.equal(model.losses['loss_soft'].seen[-1], expected)


def test_connector_called_once_for_all_keys():
    model = build(
        taps=TOKEN_TAPS,
        connectors=dict(
            gen=dict(
                type='DistillerTestTwoKeyConnector',
                in_channels=32,
                out_channels=48)),
        losses=dict(
            loss_a=dict(
                type='DistillerTestProbeLoss',
                inputs=dict(value='gen(s_tok).a')),
            loss_b=dict(
                type='DistillerTestProbeLoss',
                inputs=dict(value='gen(s_tok).b')),
            loss_mse=dict(**MSE, inputs=dict(pred='gen(s_tok).a',
                                             target='t_tok'))))
    gen = model.connectors['gen']
    gen.calls = 0
    model.loss(*batch())
    assert gen.calls == 1
    model.loss(*batch())
    assert gen.calls == 2
    a, b = model.losses['loss_a'].seen[-1], model.losses['loss_b'].seen[-1]
    assert a.shape == (2, 17, 48)
    assert torch.equal(b, 2 * a)


@pytest.mark.parametrize('epoch, factor', [(0, 0.25), (2, 0.75), (3, 1.0),
                                           (9, 1.0)])
def test_warmup(epoch, factor):
    inputs = dict(pred='proj(s_tok)', target='t_tok')
    model = build(
        taps=TOKEN_TAPS,
        connectors=PROJ,
        losses=dict(
            loss_ramp=dict(
                **MSE, inputs=inputs, warmup=dict(by='epoch', length=4)),
            loss_full=dict(**MSE, inputs=inputs)))
    model.set_progress(epoch=epoch, iter=0)
    losses = model.loss(*batch())
    assert losses['loss_full'] > 0
    torch.testing.assert_close(losses['loss_ramp'],
                               factor * losses['loss_full'])


def test_bad_warmup():
    with pytest.raises(DistillerConfigError,
                       match='warmup: by must be "epoch" or "iter"'):
        build(
            losses=dict(
                loss_kd=dict(
                    type='KDLoss',
                    inputs=dict(logits_s='logits_s', logits_t='logits_t'),
                    warmup=dict(by='step', length=4))))


KD_INPUTS = dict(logits_s='logits_s', logits_t='logits_t')


def kd(**kwargs):
    return dict(loss_kd=dict(type='KDLoss', inputs=KD_INPUTS, **kwargs))


@pytest.mark.parametrize('kwargs, message', [
    (dict(losses=kd(loss_weight=float('nan'))),
     'model.losses.loss_kd (KDLoss): loss_weight must be a finite number '
     '>= 0, got nan.'),
    (dict(losses=kd(temperature=0)),
     'model.losses.loss_kd (KDLoss): temperature must be a finite number '
     '> 0, got 0.'),
    (dict(losses=dict(loss_dkd=dict(type='DKDLoss', beta=-1, inputs=dict(
        KD_INPUTS, labels='labels')))),
     'model.losses.loss_dkd (DKDLoss): beta must be a finite number >= 0, '
     'got -1.'),
    (dict(losses=kd(form='mse')),
     "model.losses.loss_kd (KDLoss): KDLoss: form must be one of"),
    (dict(losses=kd(warmup=dict(length=float('nan')))),
     'model.losses.loss_kd.warmup.length must be an integer >= 1, got nan.'),
    (dict(losses=kd(schedule=dict(type='step', milestones=[2],
                                  gamma=float('inf')))),
     'model.losses.loss_kd.schedule.gamma must be a finite number >= 0, got '
     'inf.'),
    (dict(student_loss_weight=float('inf')),
     'model.student_loss_weight must be a finite number >= 0, got inf.'),
    (dict(student_loss_weight=True),
     'model.student_loss_weight must be a finite number >= 0, got True.'),
    (dict(losses=kd(), stages=[dict(end=2), dict(student_loss_weight=-1)]),
     'model.stages[1].student_loss_weight must be a finite number >= 0, got '
     '-1.'),
    (dict(losses=kd(), stages=[dict(end=float('inf')), dict()]),
     'model.stages[0].end must be an integer >= 1, got inf.'),
])
def test_bad_numbers_refused_at_build(kwargs, message):
    with pytest.raises(DistillerConfigError, match=re.escape(message)):
        build(**kwargs)


def test_nan_from_a_config_file_refused_at_build(tmp_path):
    path = tmp_path / 'nan_weight.py'
    path.write_text("loss_weight = float('nan')\n")
    weight = Config.fromfile(str(path)).loss_weight
    with pytest.raises(DistillerConfigError, match=re.escape(
            'model.losses.loss_kd (KDLoss): loss_weight must be a finite '
            'number >= 0, got nan.')):
        build(losses=kd(loss_weight=weight))


def test_zero_weights_are_allowed():
    """A term or the student's loss may be weighted 0 (an ablation, a ramp
    from 0)."""
    model = build(losses=kd(loss_weight=0.), student_loss_weight=0.)
    losses = model.loss(*batch())
    assert losses['loss_kd'].item() == 0 and losses['loss_cls'].item() == 0


# --------------------------------------------------------- loss weighting
def student_ce(model, inputs, labels):
    return F.cross_entropy(model.student(inputs), torch.tensor(labels))


def test_student_loss_weight():
    model = kd_model(student_loss_weight=0.25)
    inputs, data_samples = batch()
    losses = model.loss(inputs, data_samples)
    torch.testing.assert_close(losses['loss_cls'],
                               0.25 * student_ce(model, inputs, [3, 7]))


def test_distill_disabled():
    model = mimic_model(
        student_loss_weight=0.25,
        stages=[dict(end=1), dict(distill=False, student_loss_weight=0.5)])
    model.train()
    teacher_calls = counter(model.teachers['teacher'].backbone)
    model.set_progress(epoch=1, iter=10)
    assert not model.distill_enabled
    inputs, data_samples = batch()
    losses = model.loss(inputs, data_samples)
    assert list(losses) == ['loss_cls', 'cls_unweighted']
    assert teacher_calls == []
    torch.testing.assert_close(losses['loss_cls'],
                               0.5 * student_ce(model, inputs, [3, 7]))
    losses['loss_cls'].backward()
    # Zero, not None: DDP with find_unused_parameters=False needs every
    # trainable parameter in the graph.
    for param in model.connectors.parameters():
        assert param.grad is not None
        assert torch.count_nonzero(param.grad) == 0
    assert model.student.head.layers.head.weight.grad.abs().sum() > 0


# ---------------------------------------------------- copies and devices
def test_deepcopy_shares_teacher():
    model = mimic_model()
    inputs, data_samples = batch()
    before = model.loss(inputs, data_samples)
    dup = copy.deepcopy(model)
    assert dup.teachers['teacher'] is model.teachers['teacher']
    assert dup.student is not model.student
    assert dup.connectors['proj'].proj.weight is not \
        model.connectors['proj'].proj.weight
    for losses in (model.loss(inputs, data_samples),
                   dup.loss(inputs, data_samples)):
        for key, value in before.items():
            torch.testing.assert_close(losses[key], value)
    # Each copy feeds its own taps: changing the copy's connector changes
    # only the copy's loss.
    with torch.no_grad():
        dup.connectors['proj'].proj.weight.add_(1.0)
    assert dup.loss(inputs, data_samples)['loss_mse'] > before['loss_mse']
    torch.testing.assert_close(
        model.loss(inputs, data_samples)['loss_mse'], before['loss_mse'])
    tapped = model.teachers['teacher'].backbone.layers[1]
    assert len(tapped._forward_hooks) == 2
    del dup
    gc.collect()
    assert len(tapped._forward_hooks) == 1


def test_remove_taps():
    model = mimic_model()
    teacher = model.teachers['teacher']
    modules = [*model.student.modules(), *teacher.modules()]
    assert sum(len(m._forward_hooks) for m in modules) == 2
    model.remove_taps()
    assert all(len(m._forward_hooks) == 0 for m in modules)


def test_to_dtype_converts_teacher():
    model = probe_model('logits_t')
    model.to(torch.float64)
    teacher = model.teachers['teacher']
    assert all(p.dtype == torch.float64 for p in teacher.parameters())
    inputs, data_samples = batch()
    model.loss(inputs.double(), data_samples)
    seen = model.losses['loss_probe'].seen[-1]
    assert seen.dtype == torch.float64
    torch.testing.assert_close(seen, teacher(inputs.double()))


def test_predict_is_students():
    model = kd_model()
    model.eval()
    inputs, data_samples = batch()
    with torch.no_grad():
        predictions = model(inputs, data_samples, mode='predict')
        logits = model(inputs, mode='tensor')
        expected = model.student(inputs)
    assert torch.equal(logits, expected)
    scores = torch.stack([p.pred_score for p in predictions])
    torch.testing.assert_close(scores, expected.softmax(dim=1))


def test_train_step_updates_student_only():
    model = mimic_model()
    model.train()
    teacher_before = copy.deepcopy(
        model.teachers['teacher'].state_dict())
    student_before = copy.deepcopy(model.student.state_dict())
    optim_wrapper = OptimWrapper(
        torch.optim.SGD(model.parameters(), lr=0.1))
    torch.manual_seed(2)
    data = dict(
        inputs=[torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
                for _ in range(2)],
        data_samples=[DataSample().set_gt_label(k) for k in (1, 2)])
    log_vars = model.train_step(data, optim_wrapper)
    assert {'loss', 'loss_cls', 'loss_mse', 'loss_kd'} <= set(log_vars)
    for key, value in model.teachers['teacher'].state_dict().items():
        assert torch.equal(value, teacher_before[key]), key
    weight = 'backbone.layers.0.attn.qkv.weight'
    assert not torch.equal(model.student.state_dict()[weight],
                           student_before[weight])


def test_cnn_student_vit_teacher_feature_map():
    model = build(
        student=dict(
            type='ImageClassifier',
            backbone=dict(
                type='ResNet_CIFAR',
                depth=18,
                stem_channels=8,
                base_channels=8,
                out_indices=(3, )),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(
                type='LinearClsHead', num_classes=NUM_CLASSES,
                in_channels=64)),
        taps=dict(
            s_map=dict(path='backbone', selector=dict(type='index',
                                                      index=-1)),
            t_map=dict(
                model='teacher', path='backbone.layers.2',
                selector='patch_map')),
        connectors=dict(
            proj=dict(type='ConvConnector', in_channels=64, out_channels=48)),
        losses=dict(
            loss_mse=dict(**MSE, inputs=dict(pred='proj(s_map)',
                                             target='t_map'))))
    assert model.input_size == (32, 32)  # from the teacher
    model.train()
    inputs, data_samples = batch()
    losses = model.loss(inputs, data_samples)
    teacher = model.teachers['teacher']
    captured = []
    teacher.backbone.layers[2].register_forward_hook(
        lambda m, a, out: captured.append(out))
    with torch.no_grad():
        teacher.backbone(inputs)
        # mmpretrain's featmap layout: patch p = r * 4 + c at [r, c].
        t_map = captured[0][:, 1:].reshape(2, 4, 4, 48).permute(0, 3, 1, 2)
        s_map = model.student.backbone(inputs)[-1]
        expected = F.mse_loss(model.connectors['proj'](s_map), t_map)
    torch.testing.assert_close(losses['loss_mse'], expected)


def test_student_numpy_scalars_cast():
    model = kd_model(student=vit(drop_path_rate=0.1))
    drop_probs = [
        m.drop_prob for m in model.student.modules() if hasattr(m, 'drop_prob')
    ]
    assert drop_probs and all(type(p) is float for p in drop_probs)
    assert max(drop_probs) == pytest.approx(0.1)


def seed_all(seed):
    """Mixup draws its ratio from NumPy and its pairing from torch."""
    np.random.seed(seed)
    torch.manual_seed(seed)


def test_batch_augments_once_and_teacher_sees_mixed_batch():
    """Mixup/CutMix of the student's recipe run once, in the distiller's
    preprocessor; teacher and student get the same mixed images and the
    hard-label losses get the arg-max of the mixed labels."""
    student = vit()
    student['train_cfg'] = dict(augments=[dict(type='Mixup', alpha=1.0)])
    model = build(
        student=student,
        taps=dict(
            s_in=dict(path='backbone.patch_embed', capture='input'),
            t_in=dict(model='teacher', path='backbone.patch_embed',
                      capture='input')),
        losses=dict(
            loss_probe_s=dict(
                type='DistillerTestProbeLoss', inputs=dict(value='s_in')),
            loss_probe_t=dict(
                type='DistillerTestProbeLoss', inputs=dict(value='t_in')),
            loss_probe_y=dict(
                type='DistillerTestProbeLoss', inputs=dict(value='labels')),
            loss_probe_soft=dict(
                type='DistillerTestProbeLoss',
                inputs=dict(value='soft_labels'))))
    assert model.data_preprocessor is model.student.data_preprocessor
    assert model.data_preprocessor.batch_augments is not None
    assert 'batch_augments' not in PREPROCESSOR  # the caller's dict intact
    torch.manual_seed(2)
    images = [torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
              for _ in range(4)]
    data = dict(inputs=images,
                data_samples=[DataSample().set_gt_label(k)
                              for k in (0, 1, 2, 3)])
    seed_all(3)
    model.train_step(data, OptimWrapper(torch.optim.SGD(
        model.parameters(), lr=0.0)))
    probes = {n: model.losses[n].seen[-1] for n in model.losses}
    s_in, t_in = probes['loss_probe_s'], probes['loss_probe_t']
    raw = torch.stack(images).float()
    assert torch.equal(s_in, t_in)
    assert not torch.allclose(s_in, raw)  # mixed, not the raw batch
    seed_all(3)  # the same draw, applied by hand once
    once = model.data_preprocessor(copy.deepcopy(data), True)
    assert torch.allclose(s_in, once['inputs'])
    soft = probes['loss_probe_soft']
    assert soft.shape == (4, NUM_CLASSES)
    assert torch.allclose(soft.sum(1), torch.ones(4))
    assert (soft > 0).sum(1).max() == 2  # two labels per mixed image
    assert torch.equal(probes['loss_probe_y'], soft.argmax(1))
