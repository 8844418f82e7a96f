import re

import pytest

from cls_kd.models.distillers import DistillerConfigError
from cls_kd.models.distillers.schedule import (
    Progress,
    StagePlan,
    WeightSchedule,
)


def factors(schedule, by='epoch', steps=range(6)):
    return [
        schedule.factor(Progress(**{by: s})) for s in steps
    ]


def test_unscheduled_is_constant_one():
    schedule = WeightSchedule('loss_x')
    assert schedule.constant
    assert factors(schedule) == [1.0] * 6


def test_warmup_matches_documented_ramp():
    # min(1, (epoch + 1) / 4)
    schedule = WeightSchedule('loss_x', warmup=dict(by='epoch', length=4))
    assert factors(schedule) == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_linear_by_iter():
    schedule = WeightSchedule(
        'loss_x',
        schedule=dict(type='linear', by='iter', begin=1, end=3,
                      start_factor=1.0, end_factor=0.0))
    assert factors(schedule, 'iter') == [1.0, 1.0, 0.5, 0.0, 0.0, 0.0]


def test_step_schedule():
    schedule = WeightSchedule(
        'loss_x', schedule=dict(type='step', milestones=[2, 4], gamma=0.5))
    assert factors(schedule) == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


def test_window_switches_off_and_parts_multiply():
    schedule = WeightSchedule(
        'loss_x', warmup=dict(length=2),
        schedule=[dict(type='window', end=4)])
    assert factors(schedule) == [0.5, 1.0, 1.0, 1.0, 0.0, 0.0]


@pytest.mark.parametrize('kwargs, message', [
    (dict(warmup=dict(by='step', length=4)), 'by must be "epoch" or "iter"'),
    (dict(warmup=dict(length=0, end=3)), 'warmup must be'),
    (dict(schedule=dict(type='cosine')), "schedule type must be one of"),
    (dict(schedule=dict(type='linear', begin=3, end=3)), 'end > begin'),
    (dict(schedule=dict(type='step', milestones=[])), 'needs milestones'),
    (dict(schedule=dict(type='window', stop=3)), r"not \['stop'\]"),
])
def test_schedule_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        WeightSchedule('loss_x', **kwargs)


def test_stages_pick_by_epoch():
    plan = StagePlan(
        [dict(end=2), dict(end=5, losses=['loss_b']),
         dict(distill=False, student_loss_weight=1.0)],
        ['loss_a', 'loss_b'])
    picked = [plan.index(Progress(epoch=e)) for e in range(7)]
    assert picked == [0, 0, 1, 1, 1, 2, 2]
    assert plan.stages[1].losses == ('loss_b', )
    assert not plan.stages[2].distill


def test_stages_by_iter():
    plan = StagePlan([dict(by='iter', end=10), dict(distill=False)], [])
    assert plan.index(Progress(epoch=0, iter=9)) == 0
    assert plan.index(Progress(epoch=0, iter=10)) == 1


@pytest.mark.parametrize('stages, message', [
    ([dict(end=3), dict(end=5)], 'the last has none'),
    ([dict(), dict(distill=False)], 'every stage but the last'),
    ([dict(end=3), dict(end=2), dict()], 'ends must increase'),
    ([dict(end=3, losses=['loss_c']), dict()], r"no loss \['loss_c'\]"),
    ([dict(end=3, weight=2), dict()], 'takes by, end, distill'),
    ([dict(by='epoch', end=3), dict(by='iter')], 'one unit'),
])
def test_stage_errors(stages, message):
    with pytest.raises(ValueError, match=message):
        StagePlan(stages, ['loss_a'])


NAN, INF = float('nan'), float('inf')


@pytest.mark.parametrize('kwargs, message', [
    (dict(warmup=dict(length=0)),
     'model.losses.loss_x.warmup.length must be an integer >= 1, got 0.'),
    (dict(warmup=dict(length=2.5)),
     'model.losses.loss_x.warmup.length must be an integer >= 1, got 2.5.'),
    (dict(warmup=dict(length=INF)),
     'model.losses.loss_x.warmup.length must be an integer >= 1, got inf.'),
    (dict(schedule=dict(type='linear', end=5, end_factor=NAN)),
     'model.losses.loss_x.schedule.end_factor must be a finite number >= 0, '
     'got nan.'),
    (dict(schedule=[dict(type='window', end=4),
                    dict(type='linear', end=5, start_factor=-1)]),
     'model.losses.loss_x.schedule[1].start_factor must be a finite number '
     '>= 0, got -1.'),
    (dict(schedule=dict(type='linear', begin=-2, end=5)),
     'model.losses.loss_x.schedule.begin must be a finite number >= 0, got '
     '-2.'),
    (dict(schedule=dict(type='linear', end=INF)),
     'model.losses.loss_x.schedule.end must be a finite number >= 0, got '
     'inf.'),
    (dict(schedule=dict(type='step', milestones=[2, NAN])),
     'model.losses.loss_x.schedule.milestones[1] must be a finite number '
     '>= 0, got nan.'),
    (dict(schedule=dict(type='step', milestones=[2], gamma=INF)),
     'model.losses.loss_x.schedule.gamma must be a finite number >= 0, got '
     'inf.'),
    (dict(schedule=dict(type='window', begin=4, end=4)),
     'model.losses.loss_x.schedule: needs end > begin, got begin=4, end=4.'),
])
def test_schedule_numbers_name_key_value_and_range(kwargs, message):
    with pytest.raises(DistillerConfigError, match=re.escape(message)):
        WeightSchedule('loss_x', **kwargs)


def test_zero_factors_are_allowed():
    """A weight ramped from 0 (or switched off) is a valid schedule."""
    schedule = WeightSchedule('loss_x', schedule=dict(
        type='linear', end=2, start_factor=0., end_factor=0.))
    assert factors(schedule, steps=range(3)) == [0., 0., 0.]


@pytest.mark.parametrize('stages, message', [
    ([dict(end=0), dict()],
     'model.stages[0].end must be an integer >= 1, got 0.'),
    ([dict(end=2), dict(end=NAN), dict()],
     'model.stages[1].end must be an integer >= 1, got nan.'),
    ([dict(end=2.5), dict()],
     'model.stages[0].end must be an integer >= 1, got 2.5.'),
    ([dict(end=2), dict(student_loss_weight=INF)],
     'model.stages[1].student_loss_weight must be a finite number >= 0, got '
     'inf.'),
    ([dict(end=2), dict(student_loss_weight=-1.)],
     'model.stages[1].student_loss_weight must be a finite number >= 0, got '
     '-1.0.'),
    ([dict(end=2, distill='no'), dict()],
     "model.stages[0].distill must be True or False, got 'no'."),
])
def test_stage_numbers_name_key_value_and_range(stages, message):
    with pytest.raises(DistillerConfigError, match=re.escape(message)):
        StagePlan(stages, ['loss_a'])


def test_add_stop_keeps_earlier_stages():
    plan = StagePlan([dict(end=2, losses=['loss_a']), dict()],
                     ['loss_a', 'loss_b'])
    plan.add_stop(4, 0.5)
    assert [s.end for s in plan.stages] == [2, 4, None]
    assert plan.stages[1].losses is None and plan.stages[1].distill
    assert not plan.stages[2].distill
    assert plan.stages[2].student_loss_weight == 0.5
    plan.add_stop(4, 0.5)  # idempotent (before_train runs on each start)
    assert [s.end for s in plan.stages] == [2, 4, None]
