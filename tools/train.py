"""Train a model (a cls_kd distiller or any mmpretrain model) from a config.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--cfg-options key=value ...] [--launcher pytorch|slurm|mpi]
"""
import argparse
import os

import torch
from mmengine.config import Config, DictAction
from mmengine.runner import Runner

import cls_kd
from cls_kd.engine.hooks import add_schedule_hook
from cls_kd.registry import RUNNERS
from cls_kd.utils import apply_launch_args


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a model (cls_kd).')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='where logs and checkpoints go')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from CKPT, or from the latest checkpoint in the work '
        'dir when no CKPT is given')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='automatic mixed precision (float16 on GPU, bfloat16 on CPU)')
    parser.add_argument(
        '--no-validate',
        action='store_true',
        help='skip validation during training')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the lr by the actual total batch size over '
        'auto_scale_lr.base_batch_size')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. model.losses.loss_kd.'
        'temperature=4')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def merge_args(cfg: Config, args) -> Config:
    """Apply command-line options to the config."""
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    apply_launch_args(cfg, args.config, args.work_dir, args.launcher)
    if args.amp:
        wrapper = cfg.optim_wrapper
        if wrapper.get('type', 'OptimWrapper') == 'AmpOptimWrapper':
            print('AMP is already enabled in the config.')
        else:
            if torch.cuda.is_available():
                wrapper.type = 'AmpOptimWrapper'
                wrapper.setdefault('loss_scale', 'dynamic')
            else:  # mmengine's AmpOptimWrapper refuses CPU-only machines
                wrapper.type = 'AutocastOptimWrapper'
                wrapper.dtype = 'bfloat16'
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    if args.auto_scale_lr:
        cfg.auto_scale_lr = dict(cfg.get('auto_scale_lr', {}), enable=True)
    # Distillers read their stages and term schedules from this hook.
    add_schedule_hook(cfg)
    return cfg


def main(argv=None):
    args = parse_args(argv)
    cls_kd.register_all_modules(init_default_scope=False)
    cfg = merge_args(Config.fromfile(args.config), args)
    runner = (RUNNERS.build(cfg)
              if 'runner_type' in cfg else Runner.from_cfg(cfg))
    runner.train()


if __name__ == '__main__':
    main()
