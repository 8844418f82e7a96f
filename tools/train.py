"""Train a model (a cls_kd distiller or any mmpretrain model) from a config.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--amp-force] [--compile] [--tensorboard]
        [--cfg-options key=value ...] [--launcher pytorch|slurm|mpi]

``--amp`` is bfloat16 autocast where the device computes in bfloat16
natively, float16 with dynamic loss scaling on GPUs without bfloat16, and
refused on CPUs without native bfloat16 (emulated: much slower than
float32) unless ``--amp-force``; the choice is printed (see
``cls_kd.utils.amp``). ``--tensorboard`` adds TensorBoard logging to the
config's visualizer (``pip install 'cls_kd[tensorboard]'``).

``--compile`` (or ``compile = True``, or a dict of ``torch.compile`` options,
in the config) compiles the student, connectors, losses and teachers in
place before the first iteration (:class:`cls_kd.engine.hooks.CompileHook`),
what ``tools/analysis/benchmark.py --compile`` compiles; mmengine's own
``compile``, which compiles the whole ``train_step``, is not used.
"""
import argparse
import importlib.util
import os

import torch
from mmengine.config import Config, DictAction
from mmengine.runner import Runner

import cls_kd
from cls_kd.engine.hooks import add_schedule_hook
from cls_kd.registry import RUNNERS
from cls_kd.utils import (
    AmpUnavailableError,
    apply_amp,
    apply_launch_args,
    choose_amp,
    compile_options,
    resolve_teacher_paths,
)
from cls_kd.utils.config_paths import config_arg
from cls_kd.utils.resume import resolve_resume
from cls_kd.utils.run_checks import (
    check_data_roots,
    fit_schedulers_to_max_epochs,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a model (cls_kd).')
    parser.add_argument(
        'config', type=config_arg, help='train config file path')
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
        help='automatic mixed precision: bfloat16 where the device has it '
        'natively, float16 with loss scaling on GPUs without; refused on '
        'CPUs without native bfloat16 (see --amp-force)')
    parser.add_argument(
        '--amp-force',
        action='store_true',
        help='--amp, and on a CPU without native bfloat16 use emulated '
        'bfloat16 anyway (much slower than float32; for numerics checks)')
    parser.add_argument(
        '--compile',
        action='store_true',
        help='torch.compile the student, connectors, losses and teachers '
        '(same as compile=True in the config; the first iterations are '
        'slow)')
    parser.add_argument(
        '--tensorboard',
        action='store_true',
        help='also log to TensorBoard (<work_dir>/<timestamp>/vis_data); '
        'needs the tensorboard package')
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


def apply_amp_args(cfg: Config, force: bool) -> None:
    """``--amp``: the precision :func:`choose_amp` picks for the device
    training runs on, printed; a clear error where it would only slow
    training down."""
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        choice = choose_amp(device, force=force)
    except AmpUnavailableError as e:
        raise SystemExit(f'train.py: error: {e}') from None
    print(choice.describe(), flush=True)
    cfg.optim_wrapper, note = apply_amp(cfg.optim_wrapper, choice)
    print(note or f'--amp: the config already uses {choice.wrapper} '
          f'({choice.dtype}).', flush=True)


def add_tensorboard(cfg: Config) -> None:
    """``--tensorboard``: add mmengine's ``TensorboardVisBackend`` to the
    visualizer's backends (``--cfg-options`` cannot: it parses no list of
    dicts)."""
    if importlib.util.find_spec('tensorboard') is None:
        raise SystemExit(
            'train.py: error: --tensorboard needs the tensorboard package: '
            "pip install 'cls_kd[tensorboard]' (or pip install tensorboard).")
    if cfg.get('visualizer') is None:
        cfg.visualizer = dict(type='UniversalVisualizer', vis_backends=[])
    backends = list(cfg.visualizer.get('vis_backends') or [])
    if not any(b.get('type') == 'TensorboardVisBackend' for b in backends):
        backends.append(dict(type='TensorboardVisBackend'))
    cfg.visualizer.vis_backends = backends


def apply_compile_args(cfg: Config, flag: bool) -> None:
    """``--compile`` / the config's ``compile``: a :class:`CompileHook` with
    its options; the key is taken away from mmengine's runner."""
    value = cfg.pop('compile', None)
    if flag and not value:
        value = True
    try:
        options = compile_options(value)
    except ValueError as e:
        raise SystemExit(f'train.py: error: {e}') from None
    if options is None:
        return
    hooks = [
        h for h in (cfg.get('custom_hooks') or [])
        if str(h.get('type', '')).split('.')[-1] != 'CompileHook'
    ]
    cfg.custom_hooks = hooks + [dict(type='cls_kd.CompileHook', **options)]


def scale_base_lr_too(runner) -> None:
    """With ``auto_scale_lr`` enabled, scale the base lr that mmengine logs
    (``base_lr``, kept by an optimizer wrapper with several parameter
    groups) with the groups' lrs, and print both; mmengine scales only the
    groups, so the log showed the config's unscaled lr."""
    scale = runner.scale_lr

    def scale_lr(optim_wrapper, auto_scale_lr=None):
        wrappers = getattr(optim_wrapper, 'optim_wrappers',
                           {'': optim_wrapper})
        before = {k: w.param_groups[0]['lr'] for k, w in wrappers.items()}
        scale(optim_wrapper, auto_scale_lr)
        for key, wrapper in wrappers.items():
            if not before[key]:
                continue
            ratio = wrapper.param_groups[0]['lr'] / before[key]
            base = getattr(wrapper, 'base_param_settings', None)
            if base is not None and ratio != 1:
                base['lr'] = base['lr'] * ratio
            if ratio != 1:
                name = f' ({key})' if key else ''
                print(f'--auto-scale-lr{name}: lr {before[key]:.6g} -> '
                      f'{wrapper.param_groups[0]["lr"]:.6g} (x{ratio:.6g})',
                      flush=True)

    runner.scale_lr = scale_lr


def merge_args(cfg: Config, args) -> Config:
    """Apply command-line options to the config."""
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    apply_launch_args(cfg, args.config, args.work_dir, args.launcher)
    if args.amp or args.amp_force:
        apply_amp_args(cfg, args.amp_force)
    apply_compile_args(cfg, args.compile)
    if args.tensorboard:
        add_tensorboard(cfg)
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
    return resolve_teacher_paths(cfg)


def main(argv=None):
    args = parse_args(argv)
    cls_kd.register_all_modules(init_default_scope=False)
    cfg = merge_args(Config.fromfile(args.config), args)
    # Before the Runner: missing data, a shortened schedule and what to
    # resume from are settled (or refused) before any work.
    check_data_roots(cfg, ('train_dataloader', 'val_dataloader'))
    fit_schedulers_to_max_epochs(cfg)
    resolve_resume(cfg, required=args.resume == 'auto')
    runner = (RUNNERS.build(cfg)
              if 'runner_type' in cfg else Runner.from_cfg(cfg))
    scale_base_lr_too(runner)
    runner.train()
    close_process_group()
    return runner


def close_process_group() -> None:
    """Destroy the distributed process group at the end of a run:
    left to interpreter exit, its background threads were seen to abort a
    gloo rank ('terminate called without an active exception') after the
    run had finished."""
    import torch.distributed as torch_dist
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.barrier()
        torch_dist.destroy_process_group()


if __name__ == '__main__':
    main()
