"""SyncStudentBuffersHook in two gloo processes: floating-point buffers of
the model, of its EMA copy and of a train-mode teacher are averaged before
each checkpoint (by epoch or by iteration) and validation; integer buffers
and an eval-mode teacher's are left as they are."""
import json
import os
import os.path as osp
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import HOOKS, DefaultScope
from mmengine.runner import get_priority

from cls_kd.engine.hooks import SyncStudentBuffersHook

WORKER = osp.join(osp.dirname(osp.abspath(__file__)), 'sync_buffers_worker.py')

# What each rank holds: rank 0's and rank 1's values (see the worker),
# or their average.
def _state(mean, var, count, ema_mean, teacher_mean, frozen_teacher_mean):
    return dict(mean=[mean] * 2, var=[var] * 2, count=count,
                ema_mean=[ema_mean] * 2, teacher_mean=[teacher_mean] * 2,
                frozen_teacher_mean=[frozen_teacher_mean] * 2)


APART = [_state(1.0, 2.0, 3, 10.0, 100.0, 5.0),
         _state(4.0, 6.0, 7, 20.0, 200.0, 7.0)]
# num_batches_tracked stays each rank's own (3 and 7, not 5), and so does
# the eval-mode teacher's statistic.
SYNCED = [_state(2.5, 4.0, 3, 15.0, 150.0, 5.0),
          _state(2.5, 4.0, 7, 15.0, 150.0, 7.0)]


@pytest.fixture(scope='module')
def states(tmp_path_factory):
    """Per rank: the buffers it holds after each hook call."""
    tmp = tmp_path_factory.mktemp('sync_buffers')
    init_file = tmp / 'init'
    env = dict(os.environ, OMP_NUM_THREADS='1')
    procs = [
        subprocess.Popen(
            [sys.executable, WORKER, str(rank), str(init_file),
             str(tmp / f'rank{rank}.json')],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True) for rank in (0, 1)
    ]
    for proc in procs:
        log, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, log[-3000:]
    out = []
    for rank in (0, 1):
        with open(tmp / f'rank{rank}.json') as f:
            out.append(json.load(f))
    return out


@pytest.mark.slow
@pytest.mark.parametrize('stage, expected', [
    ('iter_1', APART),
    ('iter_2_checkpoint', SYNCED),
    ('val', SYNCED),
    ('epoch_end', SYNCED),
    ('iter_1_epoch_checkpoints', APART),
])
def test_buffers_synced_before_saves_and_validation(states, stage, expected):
    assert [states[rank][stage] for rank in (0, 1)] == expected


def test_single_process_is_a_no_op():
    bn = torch.nn.BatchNorm1d(2)
    bn.running_mean.fill_(3.0)
    hook = SyncStudentBuffersHook()
    runner = SimpleNamespace(model=bn, hooks=[hook], iter=0, max_iters=1)
    hook.after_train_iter(runner, 0)
    hook.after_train_epoch(runner)
    assert bn.running_mean.tolist() == [3.0, 3.0]


def test_on_in_shared_runtime(repo_root):
    """Every shipped training config inherits it from default_runtime.py,
    ahead of the checkpoint hook."""
    cfg = Config.fromfile(
        osp.join(repo_root, 'configs/_base_/default_runtime.py'))
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        hook = HOOKS.build(cfg.default_hooks.sync_buffers)
        checkpoint = HOOKS.build(cfg.default_hooks.checkpoint)
    assert type(hook) is SyncStudentBuffersHook
    # Runs first in after_train_iter / after_train_epoch, where both act.
    assert get_priority(hook.priority) < get_priority(checkpoint.priority)
