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

The config is read as every tool reads it (:func:`cls_kd.apis.load_config`);
what the options then do to it, and in which order, is
:func:`cls_kd.apis.prepare_training`.
"""
import argparse
import os

from mmengine.config import Config, DictAction

from cls_kd.apis import (
    OptionError,
    apply_training_args,
    build_runner,
    close_process_group,
    config_arg,
    load_config,
    prepare_training,
    scale_base_lr_too,
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


def merge_args(cfg, args, check: bool = False) -> Config:
    """The command line applied to ``cfg`` (a config file, or a config read
    already): ``--cfg-options`` as every tool applies them
    (:func:`~cls_kd.apis.load_config`), then this tool's options
    (:func:`~cls_kd.apis.apply_training_args`), and with ``check`` the
    checks of data, schedule and checkpoint of
    :func:`~cls_kd.apis.prepare_training`, as :func:`main` runs it. An
    option that cannot be applied is a usage error."""
    cfg = load_config(cfg, args.cfg_options)
    try:
        return prepare_training(cfg, args) if check else apply_training_args(
            cfg, args)
    except OptionError as e:
        raise SystemExit(f'train.py: error: {e}') from None


def main(argv=None):
    args = parse_args(argv)
    # Before the Runner: bad options, missing data, a shortened schedule
    # and what to resume from are settled (or refused) before any work.
    cfg = merge_args(args.config, args, check=True)
    runner = build_runner(cfg)
    scale_base_lr_too(runner)
    runner.train()
    close_process_group()
    return runner


if __name__ == '__main__':
    main()
