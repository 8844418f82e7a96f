"""Helper of the 2-process tests (tests/tools/test_dist_*.py), loaded by
the training run through ``custom_imports``: writes each rank's parameters
and buffers before the buffers are synced at the end of a training epoch
and while they are validated."""
import os.path as osp

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from cls_kd.registry import HOOKS


@HOOKS.register_module()
class BufferProbeHook(Hook):
    """Saves ``dict(buffers={name: buffer}, params={name: parameter})``
    of the model to ``<out_dir>/<when>_rank<R>.pth`` (the latest), ``when``
    being
    ``trained`` (end of a training epoch, before ``SyncStudentBuffersHook``:
    its priority is higher) or ``validated`` (end of a validation).

    Args:
        out_dir (str): Where the files go.
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self, out_dir: str):
        self.out_dir = out_dir

    def _save(self, runner, when: str) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        torch.save(
            dict(buffers={k: b.clone() for k, b in model.named_buffers()},
                 params={k: p.detach().clone()
                         for k, p in model.named_parameters()}),
            osp.join(self.out_dir, f'{when}_rank{get_rank()}.pth'))

    def after_train_epoch(self, runner) -> None:
        self._save(runner, 'trained')

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._save(runner, 'validated')
