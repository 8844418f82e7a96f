"""Worker of tests/engine/test_sync_buffers_hook.py: one of two gloo
processes that call ``SyncStudentBuffersHook`` as the Runner does, on a
DDP-wrapped BatchNorm, an EMA copy of it and two teachers (one in train
mode), whose buffers differ per rank.

    python sync_buffers_worker.py RANK INIT_FILE OUT_JSON

Writes, after each call, the buffers this rank holds.
"""
import json
import sys
from types import SimpleNamespace

import torch
import torch.distributed as dist
from mmengine.hooks import CheckpointHook
from mmengine.model import ExponentialMovingAverage
from torch.nn.parallel import DistributedDataParallel

from cls_kd.engine.hooks import SyncStudentBuffersHook

# Per rank: BN running_mean, running_var, num_batches_tracked, EMA copy's
# running_mean, running_mean of the train-mode and of the eval-mode teacher.
VALUES = {
    0: (1.0, 2.0, 3, 10.0, 100.0, 5.0),
    1: (4.0, 6.0, 7, 20.0, 200.0, 7.0)
}


class Teachers:
    """What the hook reads of a distiller's ``TeacherSet``."""

    def __init__(self, **models):
        self.models = models
        self.train_mode = frozenset({'in_train_mode'})

    def __getitem__(self, name):
        return self.models[name]


class Distiller(torch.nn.Module):

    def __init__(self):
        super().__init__()
        self.bn = torch.nn.BatchNorm1d(2)
        # Outside the module tree, as in BaseDistiller.
        self.teachers = Teachers(
            in_train_mode=torch.nn.BatchNorm1d(2),
            frozen=torch.nn.BatchNorm1d(2))


def main(rank: int, init_file: str, out: str) -> None:
    dist.init_process_group(
        'gloo', init_method=f'file://{init_file}', rank=rank, world_size=2)
    model = DistributedDataParallel(Distiller())
    ema = SimpleNamespace(ema_model=ExponentialMovingAverage(model.module))
    bn, ema_bn = model.module.bn, ema.ema_model.module.bn
    teachers = model.module.teachers.models

    def diverge():
        """What training on this rank's batches leaves."""
        mean, var, count, ema_mean, train_mean, frozen_mean = VALUES[rank]
        bn.running_mean.fill_(mean)
        bn.running_var.fill_(var)
        bn.num_batches_tracked.fill_(count)
        ema_bn.running_mean.fill_(ema_mean)
        teachers['in_train_mode'].running_mean.fill_(train_mean)
        teachers['frozen'].running_mean.fill_(frozen_mean)

    def state():
        return dict(
            mean=bn.running_mean.tolist(),
            var=bn.running_var.tolist(),
            count=bn.num_batches_tracked.item(),
            ema_mean=ema_bn.running_mean.tolist(),
            teacher_mean=teachers['in_train_mode'].running_mean.tolist(),
            frozen_teacher_mean=teachers['frozen'].running_mean.tolist())

    def run(checkpoint_hook):
        hook = SyncStudentBuffersHook()
        runner = SimpleNamespace(
            model=model, hooks=[hook, ema, checkpoint_hook], iter=0,
            max_iters=10)
        return hook, runner

    states = {}
    hook, runner = run(CheckpointHook(interval=2, by_epoch=False))
    diverge()
    hook.after_train_iter(runner, 0)  # iteration 1: no checkpoint
    states['iter_1'] = state()
    runner.iter = 1
    hook.after_train_iter(runner, 1)  # iteration 2: checkpoint saved
    states['iter_2_checkpoint'] = state()
    diverge()
    runner.iter = 2
    hook.after_train_iter(runner, 2)
    hook.before_val_epoch(runner)
    states['val'] = state()
    diverge()
    runner.iter = 4
    hook.after_train_iter(runner, 4)
    hook.after_train_epoch(runner)
    states['epoch_end'] = state()

    hook, runner = run(CheckpointHook(interval=1, by_epoch=True))
    diverge()
    hook.after_train_iter(runner, 0)  # epoch checkpoints: nothing per step
    states['iter_1_epoch_checkpoints'] = state()

    with open(out, 'w') as f:
        json.dump(states, f)
    dist.destroy_process_group()


if __name__ == '__main__':
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3])
