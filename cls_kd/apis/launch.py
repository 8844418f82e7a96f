"""What tools/train.py and tools/test.py share: work dir, launcher and the
Runner."""
import os.path as osp

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.runner import Runner

from cls_kd.registry import RUNNERS

__all__ = ['apply_launch_args', 'build_runner']


def apply_launch_args(cfg: Config, config_path: str, work_dir=None,
                      launcher: str = 'none') -> Config:
    """Set ``work_dir`` (default ``./work_dirs/<config name>``) and the
    launcher; on machines without CUDA, start a gloo process group.

    mmengine's PyTorch launcher always calls ``torch.cuda.set_device``, so
    on CPU-only machines (CI, laptops) the group is initialised here, from
    torchrun's environment, and mmengine then uses it as it is; DDP then
    wraps the model without device ids.

    Args:
        cfg (Config): The config; changed in place.
        config_path (str): Its file, which names the default work dir.
        work_dir (str, optional): ``--work-dir``.
        launcher (str): ``--launcher``: ``'none'``, ``'pytorch'``,
            ``'slurm'`` or ``'mpi'``. Defaults to ``'none'``.

    Returns:
        Config: ``cfg``.
    """
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(config_path))[0])
    cfg.launcher = launcher
    if launcher != 'none' and not torch.cuda.is_available():
        cfg.env_cfg.setdefault('dist_cfg', {})['backend'] = 'gloo'
        if launcher == 'pytorch' and not dist.is_initialized():
            dist.init_process_group(backend='gloo')
        # mmengine passes device_ids=[LOCAL_RANK], which DDP refuses for
        # CPU modules; an explicit None wins over its default.
        wrapper = dict(
            type='MMDistributedDataParallel',
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
        wrapper.update(cfg.get('model_wrapper_cfg') or {})
        wrapper['device_ids'] = None
        cfg.model_wrapper_cfg = wrapper
    return cfg


def build_runner(cfg: Config) -> Runner:
    """The config's Runner: its ``runner_type`` when it names one, else
    mmengine's ``Runner``.

    Args:
        cfg (Config): A config prepared for the run.
    """
    return RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(
        cfg)
