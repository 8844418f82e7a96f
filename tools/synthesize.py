"""Synthesise a labelled image folder from a frozen BatchNorm teacher
(DeepInversion; ADI with a student; DearKD's intra-divergence).

    python tools/synthesize.py CONFIG --out DIR [--cfg-options k=v ...]
        [--max-batches N] [--launcher none|pytorch]

    torchrun --nproc_per_node 8 tools/synthesize.py CONFIG --out DIR \\
        --launcher pytorch

The config holds ``teacher=dict(config=..., checkpoint=...)`` (a distiller
teacher spec), optionally ``student=`` (same form, for ADI) and
``synthesis=dict(...)`` (see ``configs/dearkd/synthesis/``). Writes
``DIR/train/<class>/b{batch:05d}_{i:03d}.png`` (train on it with
``CustomDataset(data_root=DIR, data_prefix='train')``), ``DIR/batches/``
(one record per finished batch, with the teacher's probability of each
image's class), ``DIR/manifest.json`` and ``DIR/grid.png`` (one row per
class, labelled; ``tools/analysis/synthesis_grid.py DIR`` redraws it).
A rerun with the same ``--out`` skips the finished batches and refuses
other settings. Rank ``r`` of ``W`` processes takes
the batches ``b % W == r``; batch ``b`` depends only on ``(seed, b)``.
Phases are changed by index, e.g. ``--cfg-options
synthesis.phases.1.iters=500``; ``--max-batches N`` stops after N batches
(a rerun continues). Every number of ``synthesis`` is checked before the
teacher is built (an error names the key and its range); the manifest of
an unfinished run holds the command that finishes it, which
``tools/train.py`` prints when given such a folder to train on.
"""
import argparse
import datetime
import inspect
import json
import math
import os.path as osp
import shlex
import sys
import time

import mmengine
import mmpretrain
import torch
from mmengine import dist
from mmengine.config import Config, DictAction

import cls_kd
from cls_kd.apis import (
    close_process_group,
    config_arg,
    init_process_group,
    load_config,
)
from cls_kd.datafree import (
    DEFAULT_WEIGHTS,
    DeepInversionSynthesizer,
    SettingsMismatchError,
    SynthesisOutput,
    SynthesisSettingError,
    balanced_labels,
    batch_generator,
    check_output_folder,
    check_synthesis_settings,
    class_folder_names,
    label_counts,
    rank_batches,
)
from cls_kd.errors import DistillerConfigError
from cls_kd.models.teachers import build_teacher
from cls_kd.registry import DATASETS
from cls_kd.utils import resolve_config_path

# What the run itself needs; the synthesizer's keyword defaults (the paper's
# setting) fill the rest of ``synthesis``.
RUN_KEYS = dict(num_images=None, batch_size=None, seed=0, classes=None,
                class_repeats=1, log_interval=100)
SYNTHESIZER_KEYS = ('phases', 'lr', 'warmup_iters', 'betas', 'eps',
                    'jitter', 'flip', 'weights', 'adaptive_temperature',
                    'intra_divergence', 'grayscale', 'teacher_size')


def _positive_int(text: str) -> int:
    """``--max-batches``: an integer >= 1 (0 would stop before the first
    batch, a negative one slice batches off the end)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(
            f'must be an integer >= 1; got {value}')
    return value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Synthesise images from a teacher (DeepInversion).')
    parser.add_argument(
        'config', type=config_arg, help='synthesis config file path')
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument(
        '--max-batches',
        type=_positive_int,
        help='stop after synthesising this many batches (per process); a '
        'rerun continues')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. teacher.checkpoint=x.pth '
        'synthesis.num_images=1000')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch'], default='none')
    return parser.parse_args(argv)


def _plain(value):
    """JSON types only (tuples become lists, ConfigDicts dicts)."""
    return json.loads(json.dumps(value))


def synthesis_settings(cfg: Config) -> dict:
    """``cfg.synthesis`` with every default filled in, every number checked
    (:func:`check_synthesis_settings`).

    Raises:
        SystemExit: Unknown keys, no ``num_images``/``batch_size``, or a
            number out of its range (naming its key and the range).
    """
    given = dict(cfg.get('synthesis') or {})
    unknown = set(given) - set(RUN_KEYS) - set(SYNTHESIZER_KEYS)
    if unknown:
        raise SystemExit(
            f'synthesize.py: error: unknown synthesis keys {sorted(unknown)}; '
            f'known: {sorted(set(RUN_KEYS) | set(SYNTHESIZER_KEYS))}.')
    signature = inspect.signature(DeepInversionSynthesizer).parameters
    settings = dict(RUN_KEYS)
    settings.update({k: signature[k].default for k in SYNTHESIZER_KEYS})
    settings['weights'] = dict(DEFAULT_WEIGHTS)
    for key, value in given.items():
        if key == 'weights':
            settings['weights'].update(value or {})
        else:
            settings[key] = value
    settings = _plain(settings)
    try:
        check_synthesis_settings(settings, prefix='synthesis.')
    except SynthesisSettingError as e:
        raise SystemExit(f'synthesize.py: error: {cfg.filename}: {e}') \
            from None
    return settings


def rerun_command(args, argv) -> str:
    """The command that continues this run to its end: the same config,
    ``--out`` and ``--cfg-options``, without ``--max-batches``, in one
    process (a batch does not depend on the number of processes)."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument('--cfg-options', nargs='+', default=[])
    given = options.parse_known_args(argv)[0].cfg_options
    words = ['python', osp.abspath(__file__), osp.abspath(args.config),
             '--out', osp.abspath(args.out)]
    return shlex.join(words + (['--cfg-options', *given] if given else []))


def default_classes(spec: dict, num_classes: int) -> list:
    """Class names of the teacher config's train dataset (its ``classes``,
    else its type's metainfo), else ``'0'..'K-1'`` zero-padded."""
    classes = None
    if isinstance(spec['config'], str):
        dataset = (Config.fromfile(resolve_config_path(spec['config'])).get(
            'train_dataloader') or {}).get('dataset') or {}
        classes = dataset.get('classes') or (dataset.get('metainfo')
                                             or {}).get('classes')
        dataset_type = dataset.get('type')
        if classes is None and isinstance(dataset_type, str):
            dataset_cls = DATASETS.get(dataset_type)
            classes = getattr(dataset_cls, 'METAINFO', {}).get('classes')
    if classes is None:
        width = len(str(num_classes - 1))
        classes = [f'{k:0{width}d}' for k in range(num_classes)]
    return list(classes)


def init_launcher(launcher: str):
    """``(rank, world_size, device)``; starts the process group for
    ``pytorch`` (torchrun, :func:`cls_kd.apis.init_process_group`)."""
    rank, world_size = init_process_group(launcher)
    device = torch.device('cuda', torch.cuda.current_device()) \
        if torch.cuda.is_available() else torch.device('cpu')
    return rank, world_size, device


def _preprocessor(name: str, preprocessor) -> dict:
    if not preprocessor or 'mean' not in preprocessor or \
            'std' not in preprocessor:
        raise SystemExit(
            f'synthesize.py: error: the {name} config has no data_preprocessor'
            f' mean/std: add data_preprocessor=dict(mean=[...], std=[...], '
            f'to_rgb=...) (0-255 scale) to the {name} spec.')
    return dict(mean=list(preprocessor['mean']), std=list(preprocessor['std']),
                to_rgb=bool(preprocessor.get('to_rgb', False)))


def build_models(cfg: Config, device: torch.device):
    """``{name: (model, preprocessor)}`` for the teacher and, if the config
    has one, the student (ADI), frozen in eval mode on ``device``."""
    models = {}
    for name in ('teacher', 'student'):
        spec = cfg.get(name)
        if not spec:
            continue
        if spec.get('checkpoint') is None and not spec.get(
                'random_init', False):
            raise SystemExit(
                f'synthesize.py: error: the {name} has no checkpoint: pass '
                f'--cfg-options {name}.checkpoint=<file>.')
        model, preprocessor = build_teacher(name, dict(spec))
        if name == 'teacher':
            preprocessor = _preprocessor(name, preprocessor)
        models[name] = (model.to(device), preprocessor)
    return models


def check_classes(settings: dict, classes: list, num_classes: int) -> None:
    """Class names for every teacher output; same-class pairs in a batch
    when the intra-class divergence is on."""
    if len(classes) != num_classes:
        raise SystemExit(f'synthesize.py: error: {len(classes)} classes for a'
                         f' teacher with {num_classes} outputs.')
    if settings['intra_divergence'] and settings['class_repeats'] == 1 and \
            settings['batch_size'] <= num_classes:
        raise SystemExit(
            f'synthesize.py: error: the intra-class divergence compares '
            f'same-class images of a batch, but a batch of '
            f'{settings["batch_size"]} holds {num_classes} classes once at '
            f'most: set synthesis.class_repeats (images of a class in a row).')


def run_batches(synthesizer, output: SynthesisOutput, batches: list,
                settings: dict, num_classes: int, rank: int, log) -> None:
    """Synthesise ``batches`` and write each one as soon as it is done."""
    num_batches = math.ceil(settings['num_images'] / settings['batch_size'])
    started = time.perf_counter()
    for done, batch in enumerate(batches, 1):
        start = time.perf_counter()
        count = min(settings['batch_size'],
                    settings['num_images'] - batch * settings['batch_size'])
        labels = balanced_labels(batch, settings['batch_size'], num_classes,
                                 settings['class_repeats'])[:count]
        result = synthesizer.synthesize(
            labels, batch_generator(settings['seed'], batch),
            name=f'batch {batch + 1}/{num_batches}')
        seconds = time.perf_counter() - start
        output.write_batch(
            batch, result.images, labels.tolist(),
            dict(images=count, label_counts=label_counts(labels.tolist()),
                 losses=result.losses, teacher_top1=result.accuracy,
                 teacher_probs=[round(float(p), 4)
                                for p in result.target_probs],
                 teacher_predictions=result.predictions.tolist(),
                 seconds=seconds, rank=rank))
        eta = (time.perf_counter() - started) / done * (len(batches) - done)
        terms = ' '.join(f'{k} {v:.4g}' for k, v in result.losses.items())
        log(f'batch {batch + 1}/{num_batches} ({done}/{len(batches)} here): '
            f'{terms}; teacher top-1 {result.accuracy:.3f}; '
            f'{seconds:.1f} s/batch; ETA '
            f'{datetime.timedelta(seconds=int(eta))}')


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    try:
        check_output_folder(args.out)
    except NotADirectoryError as e:
        raise SystemExit(f'synthesize.py: error: --out {e}') from None
    # Relative teacher/student config= paths resolved: runs from anywhere.
    cfg = load_config(args.config, args.cfg_options)
    settings = synthesis_settings(cfg)
    rank, world_size, device = init_launcher(args.launcher)

    def log(line: str) -> None:
        print(f'[rank {rank}] {line}' if world_size > 1 else line, flush=True)

    # The same weights in every run for random_init teachers (tests).
    torch.manual_seed(settings['seed'])
    try:
        models = build_models(cfg, device)
    except DistillerConfigError as e:  # unreadable or unfitting checkpoint
        raise SystemExit(f'synthesize.py: error: {e}') from None
    teacher, teacher_pre = models['teacher']
    student, student_pre = models.get('student', (None, None))
    size = settings.get('teacher_size') or settings['phases'][-1]['size']
    with torch.no_grad():
        num_classes = teacher(
            torch.zeros(1, len(teacher_pre['mean']), size, size,
                        device=device), mode='tensor').shape[-1]
    classes = settings['classes'] or default_classes(cfg.teacher,
                                                     num_classes)
    check_classes(settings, classes, num_classes)
    try:
        synthesizer = DeepInversionSynthesizer(
            teacher, teacher_pre['mean'], teacher_pre['std'],
            to_rgb=teacher_pre['to_rgb'], student=student,
            student_preprocessor=student_pre,
            log_interval=settings['log_interval'], log=log,
            **{k: settings[k] for k in SYNTHESIZER_KEYS})
    except (ValueError, TypeError) as e:  # settings it cannot use
        raise SystemExit(f'synthesize.py: error: {args.config}: {e}') \
            from None

    output = SynthesisOutput(args.out, class_folder_names(classes),
                             settings['grayscale'])
    manifest = dict(
        teacher=_plain(cfg.teacher), student=_plain(cfg.get('student')),
        synthesis=settings, config=osp.abspath(args.config),
        checkpoint=cfg.teacher.get('checkpoint'), seed=settings['seed'],
        teacher_preprocessor=teacher_pre, classes=classes,
        folders=output.folders, world_size=world_size,
        command=rerun_command(args, argv), versions=dict(
            cls_kd=cls_kd.__version__, torch=torch.__version__,
            mmengine=mmengine.__version__, mmpretrain=mmpretrain.__version__))
    try:
        output.check_settings(manifest)
    except SettingsMismatchError as e:
        raise SystemExit(f'synthesize.py: error: {e}') from None
    dist.barrier()  # every rank has read the old manifest
    if rank == 0:
        output.start(manifest)
    dist.barrier()

    num_batches = math.ceil(settings['num_images'] / settings['batch_size'])
    mine = rank_batches(num_batches, rank, world_size)
    todo = [b for b in mine if not output.done(b)]
    if len(todo) < len(mine):
        log(f'Resuming {args.out}: {len(mine) - len(todo)} of {len(mine)} '
            f'batches already done, skipping them.')
    run_batches(synthesizer, output, todo[:args.max_batches], settings,
                num_classes, rank, log)
    synthesizer.close()

    dist.barrier()
    if rank == 0:
        records = output.records(num_batches)
        left = sum(r is None for r in records)
        if left:
            log(f'{left} of {num_batches} batches left: rerun the same '
                f'command to finish.')
        else:
            final = output.finish(manifest, records)
            grid = output.write_grid()
            log(f'Wrote {final["num_images"]} images to '
                f'{osp.join(args.out, "train")} (teacher top-1 on them '
                f'{final["teacher_top1"]:.3f}); {grid.path} (other classes '
                f'or counts: python tools/analysis/synthesis_grid.py '
                f'{shlex.quote(args.out)} --num-classes N --per-class M).')
    close_process_group()


if __name__ == '__main__':
    main()
