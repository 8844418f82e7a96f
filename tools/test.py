"""Evaluate a checkpoint: a distiller config + its checkpoint (the student
is evaluated), or a plain student config + an exported student checkpoint.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE]
        [--out-item pred|metrics] [--amp [--amp-force]] [--tta]
        [--show-dir DIR] [--show] [--interval N] [--wait-time S]
        [--no-pin-memory] [--checkpoint-prefix PREFIX]
        [--cfg-options key=value ...] [--launcher pytorch|slurm|mpi]

The options are mmpretrain 1.2's ``tools/test.py``'s: ``--out x.pkl``
dumps the predictions (``DataSample`` dicts: ``pred_score``,
``pred_label``, ``gt_label``, and ``teacher_score`` for a distiller that
scores its teacher), which mmpretrain's ``analysis_tools`` read (e.g.
``confusion_matrix.py CONFIG x.pkl``); ``--out x.json --out-item metrics``
writes the metrics. One difference: without ``--out-item``, a file that is
not a pickle gets the metrics (``--out metrics.json`` did so before, and
mmpretrain refuses such a file), a ``.pkl``/``.pickle`` the predictions.
The checkpoint loads strictly; ``--checkpoint-prefix backbone.`` puts a
prefix before each of its keys (a bare backbone's weights in a classifier
config), and the error says so when the keys differ only by a prefix.
``--amp`` is mmengine's test autocast (float16 on CUDA, bfloat16 on the
CPU), refused on CPUs without native bfloat16 unless ``--amp-force`` (see
``cls_kd.utils.amp``).
"""
import argparse
import os
import os.path as osp
from typing import List, Tuple

import mmengine
import torch
from mmengine.config import Config, ConfigDict, DictAction
from mmengine.evaluator import DumpResults

from cls_kd.apis import (
    apply_launch_args,
    build_runner,
    check_data_roots,
    config_arg,
    load_config,
)
from cls_kd.utils import AmpUnavailableError, choose_amp
from cls_kd.utils.checkpoint import key_listing


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test a model (cls_kd).')
    parser.add_argument(
        'config', type=config_arg, help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where logs go')
    parser.add_argument(
        '--out',
        help='write the predictions (.pkl/.pickle) or the metrics (any '
        'other extension, or --out-item metrics) to this file')
    parser.add_argument(
        '--out-item',
        choices=['metrics', 'pred'],
        help='what --out holds (default: pred for .pkl/.pickle, metrics '
        'otherwise)')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='mixed-precision test (mmengine autocast: float16 on CUDA, '
        'bfloat16 on CPU); refused on CPUs without native bfloat16')
    parser.add_argument(
        '--amp-force',
        action='store_true',
        help='--amp, with emulated bfloat16 on CPUs without native bfloat16')
    parser.add_argument(
        '--show-dir',
        help='save images painted with the predictions here (relative to '
        '<work_dir>/<timestamp>)')
    parser.add_argument(
        '--show',
        action='store_true',
        help='show the painted images in a window')
    parser.add_argument(
        '--interval',
        type=int,
        default=1,
        help='paint every N-th sample (default: 1)')
    parser.add_argument(
        '--wait-time',
        type=float,
        default=2,
        help='seconds each window is shown (default: 2)')
    parser.add_argument(
        '--no-pin-memory',
        action='store_true',
        help='do not pin the test dataloader\'s memory')
    parser.add_argument(
        '--checkpoint-prefix',
        default='',
        metavar='PREFIX',
        help='put PREFIX before every key of the checkpoint (e.g. '
        'backbone. for a bare backbone\'s weights in a classifier config)')
    parser.add_argument(
        '--tta',
        action='store_true',
        help='test-time augmentation: the config\'s tta_model and '
        'tta_pipeline, else the average of the scores of the image and its '
        'horizontal flip')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if args.out_item is not None and args.out is None:
        parser.error('--out-item needs --out (the file to write).')
    if args.out is not None and args.out_item is None:
        args.out_item = 'pred' if args.out.endswith(
            ('.pkl', '.pickle')) else 'metrics'
    if args.out_item == 'pred' and not args.out.endswith(('.pkl', '.pickle')):
        parser.error(f'--out-item pred writes a pickle: name it .pkl, not '
                     f'{args.out!r}.')
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def set_amp(cfg: Config, force: bool) -> None:
    """``--amp``: mmengine's test autocast, refused where it would only be
    slower (see :func:`cls_kd.utils.choose_amp`)."""
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        choose_amp(device, force=force)
    except AmpUnavailableError as e:
        raise SystemExit(f'test.py: error: {e}') from None
    dtype = 'float16' if device.type == 'cuda' else 'bfloat16'
    print(f'--amp: {dtype} autocast in the test loop (mmengine\'s '
          f'test_cfg.fp16 on {device.type}).', flush=True)
    cfg.test_cfg = dict(cfg.get('test_cfg') or {}, fp16=True)


def set_visualization(cfg: Config, args) -> None:
    """``--show``/``--show-dir``: switch on the VisualizationHook."""
    hook = cfg.get('default_hooks', {}).get('visualization')
    if hook is None:
        raise SystemExit(
            'test.py: error: --show/--show-dir need a VisualizationHook: '
            "add default_hooks = dict(visualization=dict("
            "type='VisualizationHook')) to the config.")
    hook.update(enable=True, show=args.show, wait_time=args.wait_time,
                out_dir=args.show_dir, interval=args.interval)


def set_tta(cfg: Config) -> None:
    """``--tta``: wrap the model into the config's ``tta_model`` (default:
    mmpretrain's ``AverageClsScoreTTA``) and test on ``tta_pipeline``
    (default: the test pipeline, with and without a horizontal flip)."""
    if 'tta_model' not in cfg:
        cfg.tta_model = dict(type='mmpretrain.AverageClsScoreTTA')
    if 'tta_pipeline' not in cfg:
        pipeline = list(cfg.test_dataloader.dataset.pipeline)
        flips = [dict(type='RandomFlip', prob=1.),
                 dict(type='RandomFlip', prob=0.)]
        cfg.tta_pipeline = pipeline[:-1] + [
            dict(type='TestTimeAug', transforms=[flips, [pipeline[-1]]])
        ]
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline


def merge_test_args(cfg: Config, args) -> Config:
    """Apply the mmpretrain test options to the config."""
    if args.amp or args.amp_force:
        set_amp(cfg, args.amp_force)
    if args.show or args.show_dir is not None:
        set_visualization(cfg, args)
    if args.tta:
        set_tta(cfg)
    loader = cfg.get('test_dataloader')
    if loader is not None:
        if args.no_pin_memory:
            loader.pin_memory = False
        else:
            loader.setdefault('pin_memory', torch.cuda.is_available())
    return cfg


def _plain(value):
    """A metric value as JSON/YAML can hold it."""
    if torch.is_tensor(value) or hasattr(value, 'tolist'):
        return value.tolist()
    return value


_DISTILLER_ONLY = ('connectors.', 'losses.')


def _key_lists(message: str) -> Tuple[List[str], List[str], List[str]]:
    """(missing, unexpected, other lines) of mmengine's strict-load error."""
    missing, unexpected, other = [], [], []
    for line in message.splitlines():
        head, sep, keys = line.partition(': ')
        if sep and head.startswith('missing keys'):
            missing += keys.split(', ')
        elif sep and head.startswith('unexpected key'):
            unexpected += keys.split(', ')
        elif line.strip() and 'do not match exactly' not in line:
            other.append(line)
    return missing, unexpected, other


def _prefix_only(missing: List[str], unexpected: List[str]) -> str:
    """A hint when the checkpoint's keys are the model's with one prefix
    less (or more), else ''."""
    for short, long, what in ((unexpected, missing, 'without'),
                              (missing, unexpected, 'with an extra')):
        if not short or len(short) != len(long):
            continue
        key = short[0]
        for prefix in {k[:-len(key)] for k in long
                       if k.endswith(key) and k != key}:
            if {prefix + k for k in short} != set(long):
                continue
            fix = (f'--checkpoint-prefix {prefix} loads it as is' if what ==
                   'without' else f'export it without {prefix!r}')
            bare = (' (a bare backbone\'s checkpoint?)'
                    if prefix == 'backbone.' else '')
            return (f'. The checkpoint\'s keys are the model\'s {what} the '
                    f'prefix {prefix!r}{bare}: {fix}' +
                    ('; tools/model_converters/extract_student.py writes '
                     'a bare backbone student under backbone.'
                     if bare else ''))
    return ''


def load_strictly(runner, config: str, prefix: str = '') -> None:
    """Make the runner load ``load_from`` strictly (it loads it in
    ``test()``, after ``before_run``, where hooks such as EMAHook expect
    it): a missing or unexpected key is an error naming the first keys of
    each kind. One case passes, with an INFO line: a plain student
    checkpoint in a distiller config, whose connectors and loss parameters
    (not used at test time) are then missing. ``prefix`` goes before
    every checkpoint key (``--checkpoint-prefix``)."""
    load = runner.load_checkpoint

    def load_checkpoint(filename, *args, **kwargs):
        kwargs['strict'] = True
        if prefix:
            kwargs['revise_keys'] = [(r'^module\.', ''), (r'^', prefix)]
        try:
            return load(filename, *args, **kwargs)
        except RuntimeError as e:
            missing, unexpected, other = _key_lists(str(e))
            if (missing and not unexpected and not other
                    and all(k.startswith(_DISTILLER_ONLY) for k in missing)):
                # The weights were loaded before the check raised.
                runner._has_loaded = True
                runner.logger.info(
                    f'{filename} has no connector or loss parameters (a '
                    f'plain student checkpoint?): {len(missing)} keys keep '
                    f'their initial values; they are not used at test '
                    f'time.')
                return None
            lines = [f'missing keys: {key_listing(missing)}'
                     ] if missing else []
            if unexpected:
                lines.append(f'unexpected keys: {key_listing(unexpected)}')
            raise RuntimeError(
                f'{filename} does not fit the model of {config}: ' +
                '; '.join(lines + other) +
                _prefix_only(missing, unexpected)) from None

    runner.load_checkpoint = load_checkpoint


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    apply_launch_args(cfg, args.config, args.work_dir, args.launcher)
    # mmengine's load_from only warns when the checkpoint does not fit the
    # model, and a test of the wrong model then scores chance level:
    # load_strictly makes it an error.
    cfg.load_from = args.checkpoint
    merge_test_args(cfg, args)
    check_data_roots(cfg, ('test_dataloader', ))
    runner = build_runner(cfg)
    load_strictly(runner, args.config, args.checkpoint_prefix)
    if args.out_item == 'pred':
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        runner.test_evaluator.metrics.append(
            DumpResults(out_file_path=args.out))
    metrics = runner.test()
    if args.out_item == 'metrics' and runner.rank == 0:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        options = dict(indent=2) if args.out.endswith('.json') else {}
        mmengine.dump({k: _plain(v) for k, v in metrics.items()}, args.out,
                      **options)
    return metrics


if __name__ == '__main__':
    main()
