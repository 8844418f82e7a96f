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


def close_process_group(timeout_s: float = 60) -> None:
    """Destroy the default process group at the end of a run, rank 0 last.

    Left to interpreter exit, or destroyed by every rank at once, gloo's
    threads were seen to abort a rank after a finished run ('terminate
    called without an active exception'): a finished run reported as a
    failed launch. Rank 0 hosts the rendezvous store, so the other ranks
    destroy their group first and say so through the store; rank 0 waits
    for them (at most ``timeout_s``), then destroys its own. Nothing to do
    without a process group.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    from datetime import timedelta

    from torch.distributed.distributed_c10d import _get_default_store
    rank, world_size = dist.get_rank(), dist.get_world_size()
    store = _get_default_store()
    dist.barrier()
    if rank != 0:
        dist.destroy_process_group()
        store.set(f'cls_kd_closed_{rank}', '1')
        return
    try:
        store.wait([f'cls_kd_closed_{r}' for r in range(1, world_size)],
                   timedelta(seconds=timeout_s))
    except RuntimeError:  # a rank gone or slow: close anyway
        pass
    dist.destroy_process_group()


def init_process_group(launcher: str) -> tuple:
    """``(rank, world_size)`` of a tool's process; for ``launcher ==
    'pytorch'`` (torchrun) it starts the process group first: NCCL with
    GPUs, gloo without. The timeout is a day: ranks wait at the end for the
    slowest one, which may have more batches left after a resume."""
    from datetime import timedelta

    from mmengine.dist import get_dist_info, init_dist
    if launcher == 'pytorch':
        timeout = timedelta(hours=24)
        if torch.cuda.is_available():
            init_dist('pytorch', backend='nccl', timeout=timeout)
        else:
            dist.init_process_group(backend='gloo', timeout=timeout)
    return get_dist_info()
