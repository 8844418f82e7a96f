"""Synthesis numbers are checked where they enter: each out-of-range value
is refused with its key, the allowed range and the value, before the
synthesizer touches the teacher."""
import pytest
import torch.nn as nn

from cls_kd.datafree import (
    DeepInversionSynthesizer,
    SynthesisSettingError,
    balanced_labels,
    check_synthesis_settings,
)

PHASES = [dict(size=4, iters=2), dict(size=8, iters=3)]


@pytest.mark.parametrize('settings, message', [
    (dict(phases=[dict(size=4, iters=0), dict(size=8, iters=3)]),
     'phases.0.iters must be an integer >= 1; got 0.'),
    (dict(phases=[dict(size=4, iters=-5), dict(size=8, iters=3)]),
     'phases.0.iters must be an integer >= 1; got -5.'),
    (dict(phases=[dict(size=4, iters=2), dict(size=0, iters=3)]),
     'phases.1.size must be an integer >= 1; got 0.'),
    (dict(phases=[dict(size=4, iters=2.5)]),
     'phases.0.iters must be an integer >= 1; got 2.5.'),
    (dict(phases=[]), 'phases must be a non-empty list of dict(size=, '
     'iters=); got [].'),
    (dict(phases=PHASES, lr=float('nan')),
     'lr must be a finite number > 0; got nan.'),
    (dict(lr=0), 'lr must be a finite number > 0; got 0.'),
    (dict(lr=True), 'lr must be a finite number > 0; got True.'),
    (dict(eps=-1e-8), 'eps must be a finite number > 0; got -1e-08.'),
    (dict(adaptive_temperature=float('inf')),
     'adaptive_temperature must be a finite number > 0; got inf.'),
    (dict(betas=(0.5, 1.0)), 'betas.1 must be a finite number in [0, 1); '
     'got 1.0.'),
    (dict(betas=(0.5, )), 'betas must be two numbers in [0, 1); got (0.5,)'),
    (dict(jitter=-1), 'jitter must be an integer >= 0; got -1.'),
    (dict(teacher_size=0), 'teacher_size must be an integer >= 1; got 0.'),
    (dict(log_interval=-1), 'log_interval must be an integer >= 0; got -1.'),
    (dict(weights=dict(bn=float('nan'))),
     'weights.bn must be a finite number >= 0; got nan.'),
    (dict(weights=dict(tv=-1e-4)),
     'weights.tv must be a finite number >= 0; got -0.0001.'),
    (dict(weights=dict(l2=float('inf'))),
     'weights.l2 must be a finite number >= 0; got inf.'),
    (dict(weights=dict(first_bn=-10)),
     'weights.first_bn must be a finite number >= 0; got -10.'),
    (dict(intra_divergence=dict(diversity=1., boundary=float('nan'),
                                margin=1.)),
     'intra_divergence.boundary must be a finite number >= 0; got nan.'),
    (dict(phases=PHASES, warmup_iters=3),
     "warmup_iters must be in [0, 2] (the shortest phase's iters"),
    (dict(num_images=0), 'num_images must be an integer >= 1; got 0.'),
    (dict(batch_size=-4), 'batch_size must be an integer >= 1; got -4.'),
    (dict(class_repeats=0), 'class_repeats must be an integer >= 1; got 0.'),
    (dict(seed=-1), 'seed must be an integer >= 0; got -1.'),
])
def test_out_of_range_numbers_name_key_range_and_value(settings, message):
    with pytest.raises(SynthesisSettingError) as error:
        check_synthesis_settings(settings)
    assert str(error.value).startswith(message)
    with pytest.raises(SynthesisSettingError) as error:
        check_synthesis_settings(settings, prefix='synthesis.')
    assert f'synthesis.{message.split()[0]}' in str(error.value)


def test_defaults_and_the_papers_setting_pass():
    check_synthesis_settings({})
    check_synthesis_settings(
        dict(phases=[dict(size=112, iters=2000), dict(size=224, iters=1000)],
             lr=0.25, warmup_iters=100, betas=(0.5, 0.9), eps=1e-8,
             jitter=30, weights=dict(tv=1e-4, l2=1e-5, bn=0.01, first_bn=10.,
                                     adaptive=0.2),
             adaptive_temperature=3., teacher_size=None, log_interval=0,
             intra_divergence=dict(diversity=1., boundary=1., margin=0.,
                                   feature_module='fc'),
             num_images=100, batch_size=128, class_repeats=8, seed=0))
    # A warm-up as long as the shortest phase still reaches the peak lr.
    check_synthesis_settings(dict(phases=PHASES, warmup_iters=2))


class Tiny(nn.Module):

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        self.fc = nn.Linear(4, 3)


@pytest.mark.parametrize('kwargs, key', [
    (dict(phases=[dict(size=4, iters=0), dict(size=8, iters=1)]),
     'phases.0.iters'),
    (dict(phases=[dict(size=0, iters=1)]), 'phases.0.size'),
    (dict(lr=float('nan')), 'lr'),
    (dict(weights=dict(bn=-0.01)), 'weights.bn'),
])
def test_synthesizer_refuses_before_touching_the_teacher(kwargs, key):
    teacher = Tiny().eval()
    kwargs = dict(dict(phases=PHASES, warmup_iters=0), **kwargs)
    with pytest.raises(SynthesisSettingError, match=rf'^{key} must be'):
        DeepInversionSynthesizer(teacher, [0.] * 3, [1.] * 3, **kwargs)
    assert not any(m._forward_hooks or m._forward_pre_hooks
                   for m in teacher.modules())


@pytest.mark.parametrize('args, message', [
    ((0, 4, 0), 'num_classes must be an integer >= 1; got 0.'),
    ((0, 0, 10), 'batch_size must be an integer >= 1; got 0.'),
    ((0, 4, 10, 0), 'class_repeats must be an integer >= 1; got 0.'),
    ((-1, 4, 10), 'batch_index must be an integer >= 0; got -1.'),
])
def test_balanced_labels_refuses_empty_counts(args, message):
    with pytest.raises(SynthesisSettingError) as error:
        balanced_labels(*args)
    assert str(error.value) == message
