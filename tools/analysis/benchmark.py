"""Measure the training speed of a config on synthetic batches.

    python tools/analysis/benchmark.py CONFIG [--batch-size B] [--iters N]
        [--warmup W] [--amp] [--amp-force] [--compile] [--reference]
        [--channels-last] [--device cpu|cuda] [--input-size S] [--epoch E]
        [--guard config|on|off|both] [--replay]
        [--cfg-options key=value ...] [--out results.json]

Builds the model of CONFIG (a cls_kd distiller or a plain mmpretrain
classifier) and the optimizer wrapper of its ``optim_wrapper``, then runs
``model.train_step`` on a synthetic batch shaped like the dataloader's (a
list of B uint8 images of 3xSxS on the CPU and ``DataSample``\\ s with random
labels), so that the data preprocessor (with Mixup/CutMix if configured),
the teachers, the student, the losses, backward and the optimizer step all
run as in training. Teacher checkpoints are ignored (random weights are as
fast as trained ones) and ``init_weights`` is not called (nothing is
downloaded).

Reported after W warm-up steps, over N timed steps:

* training images/s and the per-step time (mean and std; CUDA is
  synchronized before and after every step, as the per-iteration logging of
  real training does anyway);
* the teacher-forward share: each teacher run alone N times (after W
  warm-up runs) on the preprocessed batch via ``model._run_teacher``, under
  the same no-grad/autocast context, its mean time divided by the mean step
  time;
* the peak memory: ``torch.cuda.max_memory_allocated`` over the training
  steps on CUDA, the peak resident set size of the whole process (since it
  started) on the CPU;
* the number of parameter groups of the optimizer.

``--amp`` means what it means in ``tools/train.py`` (``cls_kd.utils.amp``):
bfloat16 autocast (cls_kd's ``AutocastOptimWrapper``) where the device has
native bfloat16, float16 with loss scaling (mmengine's ``AmpOptimWrapper``)
on GPUs without, refused on CPUs without native bfloat16 unless
``--amp-force``; the choice is printed and reported. Without ``--amp``, a
config's float16 wrapper with loss scaling (``AmpOptimWrapper``, CUDA
only) runs in float32 on the CPU, as its ``OptimWrapper`` (or
``NonFiniteGuardOptimWrapper``), with a note. ``--compile`` compiles
what ``tools/train.py --compile`` compiles (:func:`cls_kd.utils.compile_model`:
the student, connectors, losses and teachers).

``--reference`` also builds a hand-written PyTorch step doing the same work
(``reference_step.py``: the same mmpretrain modules and weights, the losses
written out, no distiller or mmengine in the step, cls_kd's optimizer with
its groups merged and fused on CUDA, the same autocast; compiled as one
function with ``--compile``) for logit-family (KD, DKD, NKD, DeiT's
distillation token), ViTKD, ScaleKD, AttnDistill and DearKD configs (the
stage and terms of ``--epoch``), and times both in one process, step by
step in turn after the same warm-up; reported: both speeds, cls_kd's speed as
a fraction of the reference's, both teacher shares and, on CUDA, both peak
memories (each without the other's weights and optimizer state) and their
ratio. ``--channels-last`` puts both sides' models in channels-last memory
format (for CNNs on CUDA).
``--guard`` sets cls_kd's non-finite step guard (``NonFiniteGuardMixin``)
of the config's optimizer wrapper: ``config`` (default) as the config has
it, ``on``, ``off``; ``both`` times the step with the guard and without it
in one process, in turn after the same warm-up (one model, one optimizer:
only ``skip_nonfinite`` changes between them), and reports the guard's cost
as a fraction of the step time without it: of the mean step times, the
median of the rounds' differences (robust to a changing load), and the
guard's own work timed alone on one step's gradients (N runs after W
warm-up runs; precise where the step times are too noisy to show it).
``--epoch E`` times the step as it runs in epoch E (0 by default): with
``stages`` or scheduled terms, what the distiller runs there (e.g. no
teacher and no distillation terms after DearKD's ``distill_epochs``); the
active stage and terms are printed and reported.

``--replay`` (logit-family configs: KD, DKD, NKD, DeiT's token) times three
steps in one process, in turn after the same warm-up: ``student alone``
(the distiller's student module with mmpretrain's ``train_step``: its own
supervised loss, unweighted, and an optimizer wrapper built from the
config's ``optim_wrapper`` over the student's parameters only; no teacher,
no distiller), ``online KD`` (the config as is) and ``replayed KD`` (the
same distiller built with ``outputs=<a temporary store>`` on every teacher,
so that it reads the teacher's logits from disk instead of running it).
The store is written in the format of ``tools/dump_teacher_outputs.py``
(top-10 float16 records of the built teacher's logits on the synthetic
batch, its digest, the epoch of ``--epoch`` complete), and the batch's
samples carry the replay keys of ``SeededAugmentDataset``. Reported: each
row's step time, images/s and ratio to the student alone (of the mean step
times, and paired: one plus the median of the rounds' differences over the
median student-alone step), and a one-line conclusion. The config's batch
augments (Mixup/CutMix) run in all three rows as in training, where the
distiller accepts them with stored outputs. A config whose distiller cannot
replay (a loss reading teacher features, a tap or teacher-running
connector on a teacher: the distiller's reason is printed) or that has no
teacher is refused; so is ``--replay`` with ``--reference`` or ``--guard
both``. See ``docs/stored_teacher_outputs.md``.

Example::

    python tools/analysis/benchmark.py \\
        configs/kd/kd_resnet18-c16_vit-t4-p8_1xb64_digits.py \\
        --device cpu --batch-size 64 --iters 20 --out work_dirs/bench.json
"""
import argparse
import copy
import json
import logging
import os
import os.path as osp
import platform
import resource
import statistics
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
from mmengine.config import Config, DictAction
from mmengine.logging import MMLogger
from mmengine.optim import OptimWrapper, build_optim_wrapper
from mmpretrain.structures import DataSample

import cls_kd
from cls_kd import apis
from cls_kd.apis import config_arg
from cls_kd.engine.optimizers import NonFiniteGuardMixin
from cls_kd.errors import DistillerConfigError
from cls_kd.models.teachers import expected_input_size, teacher_forward
from cls_kd.models.teachers.stored_outputs import (
    FORMAT,
    encode_records,
    epoch_file,
    record_dtype,
    write_manifest,
)
from cls_kd.registry import MODELS
from cls_kd.utils import (
    AmpChoice,
    AmpUnavailableError,
    apply_amp,
    choose_amp,
    compile_model,
)

# Float16 wrappers with loss scaling (CUDA only) -> their float32 wrapper,
# for CPU runs without --amp.
FP16_ONLY_CUDA = {
    'AmpOptimWrapper': 'OptimWrapper',
    'NonFiniteGuardAmpOptimWrapper': 'NonFiniteGuardOptimWrapper',
}


def _fail(message: str):
    """Stop with a one-line error message (exit status 1)."""
    raise SystemExit(f'benchmark.py: error: {message}')


def _log(message: str = ''):
    """Print at once, so that progress shows while it happens."""
    print(message, flush=True)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse the command line (``argv`` defaults to ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(
        description='Training speed of a cls_kd / mmpretrain config on '
        'synthetic batches.')
    parser.add_argument('config', type=config_arg, help='config file path')
    parser.add_argument(
        '--batch-size',
        type=int,
        help='images per step (default: the config\'s '
        'train_dataloader.batch_size, else 64)')
    parser.add_argument(
        '--iters', type=int, default=50, help='timed steps (default: 50)')
    parser.add_argument(
        '--warmup',
        type=int,
        default=10,
        help='untimed steps first (default: 10)')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='mixed precision as in tools/train.py: bfloat16 where native, '
        'else float16 with loss scaling on GPUs; refused on CPUs without '
        'native bfloat16')
    parser.add_argument(
        '--amp-force',
        action='store_true',
        help='--amp, with emulated bfloat16 on CPUs without native bfloat16')
    parser.add_argument(
        '--compile',
        action='store_true',
        help='torch.compile what tools/train.py --compile compiles (the '
        'student, connectors, losses and teachers; the reference as one '
        'function)')
    parser.add_argument(
        '--reference',
        action='store_true',
        help='also time a hand-written PyTorch step of the same work, in '
        'turn with the cls_kd step (KD, DKD, NKD, DeiT token, ViTKD, '
        'ScaleKD, AttnDistill and DearKD configs)')
    parser.add_argument(
        '--channels-last',
        action='store_true',
        help='channels-last memory format for the models (CNNs on CUDA)')
    parser.add_argument(
        '--device',
        choices=['cpu', 'cuda'],
        help='default: cuda if available, else cpu')
    parser.add_argument(
        '--input-size',
        type=int,
        help='image side S (default: the distiller\'s input_size, else the '
        'model\'s patch-embedding size, else 224)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. model.student_loss_weight=0.5')
    parser.add_argument(
        '--epoch',
        type=int,
        default=0,
        help='time the step of this (0-based) epoch: the stage and loss '
        'terms active there (default: 0)')
    parser.add_argument(
        '--guard',
        choices=['config', 'on', 'off', 'both'],
        default='config',
        help='the non-finite step guard: as the config has it (default), '
        'on, off, or both: the step with and without it timed in turn')
    parser.add_argument(
        '--replay',
        action='store_true',
        help='time in turn the student alone, the config (online KD) and '
        'the config reading its teacher\'s logits from a store (replayed '
        'KD; logit-family configs)')
    parser.add_argument('--out', help='write the results as JSON here')
    args = parser.parse_args(argv)
    if args.epoch < 0:
        parser.error('--epoch must not be negative')
    if args.iters < 1:
        parser.error('--iters must be at least 1')
    if args.warmup < 0:
        parser.error('--warmup must not be negative')
    if args.batch_size is not None and args.batch_size < 1:
        parser.error('--batch-size must be at least 1')
    if args.input_size is not None and args.input_size < 1:
        parser.error('--input-size must be at least 1')
    if args.replay and (args.reference or args.guard == 'both'):
        parser.error('--replay times its own three steps in turn: leave out '
                     '--reference and --guard both')
    return args


def resolve_device(name: Optional[str]) -> torch.device:
    """The device to run on; a clear error for CUDA without CUDA."""
    if name is None:
        name = 'cuda' if torch.cuda.is_available() else 'cpu'
    if name == 'cuda' and not torch.cuda.is_available():
        _fail('--device cuda was asked for but CUDA is not available '
              f'(torch {torch.__version__}, '
              f'built with CUDA {torch.version.cuda}); use --device cpu.')
    return torch.device(name)


def load_config(args: argparse.Namespace) -> Config:
    """Read the config as every tool does (:func:`cls_kd.apis.load_config`:
    ``--cfg-options``, modules, default scope, teacher paths) and check
    what the benchmark needs."""
    try:
        cfg = apis.load_config(args.config, args.cfg_options)
    except FileNotFoundError as e:
        _fail(str(e))
    if cfg.get('model') is None:
        _fail(f'{args.config} has no `model`.')
    if cfg.get('optim_wrapper') is None:
        _fail(f'{args.config} has no `optim_wrapper`: the benchmark times '
              f'full training steps and builds their optimizer from it '
              f'(add e.g. optim_wrapper=dict(optimizer=dict(type=\'AdamW\', '
              f'lr=1e-3)) or a schedule _base_).')
    return cfg


def build_model(cfg: Config,
                outputs: Optional[Dict[str, str]] = None
                ) -> Tuple[nn.Module, List[str]]:
    """Build the config's model with random teacher weights.

    Args:
        cfg (Config): The config.
        outputs (dict, optional): ``teacher -> store directory``: the
            teachers' ``outputs`` (replayed instead of run).

    Returns:
        tuple: The model and the names of its teachers (empty for a plain
        classifier).
    """
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    specs = []
    if isinstance(model_cfg.get('teacher'), dict):
        specs.append(('teacher', model_cfg['teacher']))
    if isinstance(model_cfg.get('teachers'), dict):
        specs.extend(model_cfg['teachers'].items())
    for name, spec in specs:
        if spec.get('checkpoint') is not None:
            _log(f'Teacher {name!r}: checkpoint {spec["checkpoint"]} '
                 f'ignored (random weights are as fast).')
        else:
            _log(f'Teacher {name!r}: no checkpoint (random weights).')
        spec['checkpoint'], spec['random_init'] = None, True
        if outputs is not None:
            spec['outputs'] = outputs[name]
    model = MODELS.build(model_cfg)
    teachers = getattr(model, 'teachers', None)
    names = list(teachers) if teachers is not None else []
    return model, names


def choose_precision(args: argparse.Namespace,
                     device: torch.device) -> Optional[AmpChoice]:
    """What ``--amp`` gives on ``device`` (None without it), printed; a
    one-line error where it is refused."""
    if not (args.amp or args.amp_force):
        return None
    try:
        choice = choose_amp(device, force=args.amp_force)
    except AmpUnavailableError as e:
        _fail(str(e))
    _log(choice.describe())
    return choice


def build_wrapper(model: nn.Module, cfg: Config, amp: Optional[AmpChoice],
                  device: torch.device) -> OptimWrapper:
    """The config's optimizer wrapper, switched to the ``amp`` precision
    if given."""
    wrapper_cfg = copy.deepcopy(cfg.optim_wrapper)
    if amp is not None:
        wrapper_cfg, note = apply_amp(wrapper_cfg, amp)
        if note:
            _log(note)
    elif device.type == 'cpu' and wrapper_cfg.get('type') in FP16_ONLY_CUDA:
        # mmengine's AmpOptimWrapper refuses CPUs: time float32 there.
        old = wrapper_cfg['type']
        wrapper_cfg['type'] = FP16_ONLY_CUDA[old]
        for key in ('dtype', 'loss_scale', 'use_fsdp'):
            wrapper_cfg.pop(key, None)
        _log(f'The config\'s {old} (float16 with loss scaling) needs a GPU: '
             f'{wrapper_cfg["type"]} (float32) on the CPU.')
    # mmengine logs one INFO line per parameter with custom settings.
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        return build_optim_wrapper(model, wrapper_cfg)
    finally:
        logger.setLevel(level)


def apply_guard(wrapper: OptimWrapper, mode: str) -> Optional[bool]:
    """``--guard``: turn the wrapper's non-finite step guard on or off
    (``both``: on, see :func:`guard_steps`); a one-line error for a wrapper
    without the guard.

    Returns:
        bool | None: Whether the guard is on (None: the config's wrapper
        has none and ``mode`` is ``'config'``).
    """
    guarded = isinstance(wrapper, NonFiniteGuardMixin)
    if mode == 'config':
        return wrapper.skip_nonfinite if guarded else None
    if not guarded:
        _fail(f'--guard {mode}: the config\'s {type(wrapper).__name__} has '
              f'no non-finite step guard; set optim_wrapper.type to '
              f'NonFiniteGuardOptimWrapper (NonFiniteGuardAmpOptimWrapper '
              f'for AmpOptimWrapper).')
    wrapper.skip_nonfinite = mode != 'off'
    return wrapper.skip_nonfinite


def guard_steps(model: nn.Module, wrapper: OptimWrapper,
                data: dict) -> Dict[str, Callable]:
    """``--guard both``: the training step with the guard (``cls_kd``) and
    without it (``guard off``), for :func:`_timed_in_turn`."""

    def step(on: bool):
        wrapper.skip_nonfinite = on
        model.train_step(data, wrapper)

    return {'cls_kd': lambda: step(True), 'guard off': lambda: step(False)}


def time_guard_check(model: nn.Module, wrapper: OptimWrapper, data: dict,
                     iters: int, warmup: int,
                     device: torch.device) -> List[float]:
    """Seconds per run of the guard's own work alone, on the gradients of
    one forward and backward of ``data``: its forward hook put on and taken
    off, the loss flag, the gradients' 2-norms and reading the flags (what
    :func:`guard_steps` adds to a step, without the step's noise)."""
    with wrapper.optim_context(model):
        losses = model._run_forward(model.data_preprocessor(data, True),
                                    mode='loss')
    loss = model.parse_losses(losses)[0]
    loss.backward()
    wrapper.skip_nonfinite = True

    def check():
        with wrapper.optim_context(model):
            pass
        wrapper._loss_finite = torch.isfinite(loss.detach()).all()
        wrapper._finite_on_all_ranks()

    times = _timed_in_turn({'guard check': check}, iters, warmup,
                           device)[0]['guard check']
    wrapper._loss_finite = None
    wrapper.optimizer.zero_grad()
    return times


def guard_results(on: List[float], off: List[float], check: List[float],
                  batch_size: int) -> dict:
    """The step without the guard and the guard's cost, from the seconds
    of both sides' timed steps (``on[i]`` and ``off[i]`` ran in the same
    round): of the mean step times, and the median of the rounds'
    differences over the median step without the guard (robust to a
    machine whose load changes during the run); and the guard's work
    alone (``check``, :func:`time_guard_check`) over the mean step without
    it."""
    paired = statistics.median(a - b for a, b in zip(on, off))
    return dict(
        guard_off=_summary(off, batch_size),
        guard_cost=statistics.mean(on) / statistics.mean(off) - 1,
        guard_cost_paired=paired / statistics.median(off),
        guard_check_ms=statistics.mean(check) * 1e3,
        guard_check_share=statistics.mean(check) / statistics.mean(off))


#: The rows of ``--replay``, in the order they run in each round.
REPLAY_ROWS = ('student alone', 'online KD', 'replayed KD')
#: Top-k and storage of the ``--replay`` store: the defaults of
#: ``tools/dump_teacher_outputs.py``.
REPLAY_TOPK, REPLAY_DTYPE = 10, 'float16'
#: Issue 22's target: a replayed step at most this times the student's.
REPLAY_TARGET = 1.1


def teacher_digests(model: nn.Module, names: List[str]) -> Dict[str, str]:
    """``teacher -> digest`` of the built teachers (on the CPU, as the
    distiller that replays computes it when it is built)."""
    return {name: model.teachers.digest(name) for name in names}


def replay_facts(batch_size: int) -> dict:
    """The run facts of the ``--replay`` store (see
    ``cls_kd.datasets.run_facts``): one batch of ``batch_size`` synthetic
    views, one process."""
    return dict(seed=0, pipeline='synthetic batch', length=batch_size,
                batch_size=batch_size, world_size=1)


def write_replay_stores(model: nn.Module, digests: Dict[str, str],
                        data: dict, directory: str,
                        epoch: int) -> Dict[str, dict]:
    """Stores of the teachers' outputs on the synthetic batch, in the format
    of ``tools/dump_teacher_outputs.py`` (top-10 float16 records).

    Each sample of ``data`` becomes the view of index = its position in
    epoch ``epoch`` (the replay keys that ``SeededAugmentDataset`` sets),
    and each teacher's record of it holds the teacher's logits on it (run
    once here, float32, on the batch preprocessed without batch augments,
    as the dump does).

    Args:
        model (nn.Module): The online distiller.
        digests (dict): ``teacher -> digest`` (:func:`teacher_digests`).
        data (dict): The batch of :func:`make_batch`; its samples get the
            replay keys.
        directory (str): Where the stores go, one folder per teacher.
        epoch (int): The epoch of the views (the store's complete epoch).

    Returns:
        dict: ``teacher -> dict(dir, topk, num_classes, dtype,
        bytes_per_sample)``.
    """
    samples = data['data_samples']
    for index, sample in enumerate(samples):
        sample.set_metainfo(
            dict(replay_index=index, replay_epoch=epoch, replay_seed=0))
    targets = torch.cat([sample.gt_label for sample in samples])
    with torch.no_grad():
        inputs = model.data_preprocessor(data, False)['inputs']
    stores = {}
    for name, digest in digests.items():
        with torch.no_grad():
            logits = teacher_forward(
                model.teachers[name], model.teachers.inputs_for(name, inputs))
        num_classes = logits.shape[1]
        rec_dtype = record_dtype(
            min(REPLAY_TOPK, num_classes), num_classes, REPLAY_DTYPE)
        out = osp.join(directory, name)
        os.makedirs(out)
        records = np.memmap(epoch_file(out, epoch), dtype=rec_dtype,
                            mode='w+', shape=(len(samples), ))
        records[:] = encode_records(logits, targets, rec_dtype)
        records.flush()
        del records
        write_manifest(out, dict(
            format=FORMAT,
            teacher=dict(name=name, checkpoint=None, digest=digest),
            config=dict(file='tools/analysis/benchmark.py --replay',
                        digest=None),
            run=replay_facts(len(samples)), num_classes=num_classes,
            topk=rec_dtype['logits'].shape[0], dtype=REPLAY_DTYPE,
            versions=dict(cls_kd=cls_kd.__version__,
                          torch=torch.__version__),
            epochs={str(epoch): dict(complete=True)}))
        stores[name] = dict(dir=out, topk=rec_dtype['logits'].shape[0],
                            num_classes=num_classes, dtype=REPLAY_DTYPE,
                            bytes_per_sample=rec_dtype.itemsize)
    return stores


def replay_steps(args: argparse.Namespace, cfg: Config, model: nn.Module,
                 online: Callable, digests: Dict[str, str], data: dict,
                 directory: str, amp: Optional[AmpChoice],
                 device: torch.device) -> Tuple[Dict[str, Callable], dict]:
    """``--replay``: the training steps of :data:`REPLAY_ROWS`, for
    :func:`_timed_in_turn`.

    ``student alone`` is mmpretrain's ``train_step`` of the online
    distiller's student module (its own loss, not weighted by
    ``student_loss_weight``) with an optimizer wrapper of the config's
    ``optim_wrapper`` over the student's parameters only; ``online KD`` is
    ``online`` (the config's step); ``replayed KD`` is the distiller built
    by :func:`build_replayed` on the stores of :func:`write_replay_stores`,
    with an optimizer wrapper of its own, set as ``model`` (precision,
    guard, channels-last, compile).

    Returns:
        tuple: ``label -> step``, and ``teacher -> what its store holds``
        (without its temporary directory).
    """
    stores = write_replay_stores(model, digests, data, directory,
                                 args.epoch)
    replayed = build_replayed(
        cfg, {name: store.pop('dir') for name, store in stores.items()},
        len(data['inputs']), args.epoch)
    replayed.to(device)
    replayed.train()
    replayed.set_progress(epoch=args.epoch, iter=0)
    if args.channels_last:
        replayed.to(memory_format=torch.channels_last)
    if args.compile:
        compile_model(replayed)
    replayed_wrapper = build_wrapper(replayed, cfg, amp, device)
    apply_guard(replayed_wrapper, args.guard)
    student_wrapper = build_wrapper(model.student, cfg, amp, device)
    apply_guard(student_wrapper, args.guard)
    steps = {
        'student alone': lambda: model.student.train_step(
            data, student_wrapper),
        'online KD': online,
        'replayed KD': lambda: replayed.train_step(data, replayed_wrapper),
    }
    return steps, stores


def build_replayed(cfg: Config, stores: Dict[str, str], batch_size: int,
                   epoch: int) -> nn.Module:
    """The config's distiller built again with each teacher's ``outputs``
    set to its store, from the seed of the first build (so that its random
    teachers have the same weights, and digests, as those that wrote the
    stores), and checked against the stores' run facts as
    ``SeededAugmentHook`` does; a one-line error where the distiller
    refuses to replay (its reason)."""
    _log('Building the distiller again, replaying the stored outputs ...')
    torch.manual_seed(0)
    try:
        model = build_model(cfg, stores)[0]
        model.check_stored_outputs(replay_facts(batch_size), [epoch])
    except DistillerConfigError as e:
        _fail(f'--replay: {e}')
    return model


def replay_results(times: Dict[str, List[float]], peaks: Dict[str, int],
                   batch_size: int, store: dict) -> dict:
    """The ``--replay`` rows (:data:`REPLAY_ROWS`) from the seconds of
    their timed steps (``times[label][i]`` ran in round ``i``): each row's
    speed, its step time over the student alone's (of the means, and
    paired: one plus the median of the rounds' differences over the median
    student-alone step, robust to a changing load), its CUDA peak memory
    (``peaks``, None on the CPU), and a one-line conclusion."""
    alone = times['student alone']
    rows = {}
    for label in REPLAY_ROWS:
        rows[label] = dict(
            **_summary(times[label], batch_size),
            vs_student=statistics.mean(times[label]) / statistics.mean(alone),
            vs_student_paired=1 + statistics.median(
                a - b for a, b in zip(times[label], alone)) /
            statistics.median(alone),
            peak_memory_mib=(peaks[label] / 2**20
                             if label in peaks else None))
    replayed, online = rows['replayed KD'], rows['online KD']
    worst = max(replayed['vs_student'], replayed['vs_student_paired'])
    conclusion = (
        f'Replayed KD: {replayed["vs_student"]:.2f}x the student-alone step '
        f'time (paired {replayed["vs_student_paired"]:.2f}x), online KD '
        f'{online["vs_student"]:.2f}x (paired '
        f'{online["vs_student_paired"]:.2f}x): '
        f'{"within" if worst <= REPLAY_TARGET else "above"} the target '
        f'(replayed KD at most {REPLAY_TARGET}x the student alone).')
    return dict(rows=rows, store=store, conclusion=conclusion)


def default_input_size(model: nn.Module) -> Tuple[int, int]:
    """The distiller's ``input_size``, else the patch-embedding size of the
    model, else 224x224."""
    size = getattr(model, 'input_size', None)
    if size is None:
        size = expected_input_size(model)
    if size is None:
        return (224, 224)
    if isinstance(size, int):
        return (size, size)
    return tuple(int(s) for s in size)


def num_classes_of(model: nn.Module) -> int:
    """Number of classes of the (student's) head, for the random labels."""
    student = getattr(model, 'student', model)
    for owner in (getattr(student, 'head', None),
                  getattr(model, 'data_preprocessor', None)):
        value = getattr(owner, 'num_classes', None)
        if isinstance(value, int) and value > 0:
            return value
    return 1000


def make_batch(batch_size: int, size: Tuple[int, int],
               num_classes: int) -> dict:
    """A batch as mmengine's ``pseudo_collate`` gives it: a list of uint8
    CHW images and a list of ``DataSample`` with a random ``gt_label``."""
    images = torch.randint(
        0, 256, (batch_size, 3, *size), dtype=torch.uint8)
    labels = torch.randint(0, num_classes, (batch_size, ))
    return dict(
        inputs=list(images.unbind(0)),
        data_samples=[
            DataSample().set_gt_label(int(label)) for label in labels
        ])


def _sync(device: torch.device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _timed_in_turn(fns: Dict[str, Callable], iters: int, warmup: int,
                   device: torch.device
                   ) -> Tuple[Dict[str, List[float]], Dict[str, int]]:
    """Run the functions ``fns`` (label -> fn) in turn, ``warmup`` then
    ``iters`` rounds, so that drifts of the machine hit all of them alike.

    Returns:
        tuple: Seconds of each label's timed runs, and on CUDA the highest
        ``max_memory_allocated`` during any of its timed runs (empty on the
        CPU). Prints every warm-up run and about ten progress
        lines.
    """
    every = max(1, iters // 10)
    times = {label: [] for label in fns}
    peaks = {}
    for i in range(warmup + iters):
        for label, fn in fns.items():
            _sync(device)
            if device.type == 'cuda':
                torch.cuda.reset_peak_memory_stats(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            elapsed = time.perf_counter() - start
            done = i - warmup + 1
            if device.type == 'cuda' and i >= warmup:
                peaks[label] = max(peaks.get(label, 0),
                                   torch.cuda.max_memory_allocated(device))
            if i < warmup:
                _log(f'  [{label}] warm-up {i + 1}/{warmup}: '
                     f'{elapsed * 1e3:.1f} ms')
                continue
            times[label].append(elapsed)
            if done % every == 0 or done == iters:
                _log(f'  [{label}] {done}/{iters}: {elapsed * 1e3:.1f} ms')
    return times, peaks


def time_teachers(model: nn.Module, names: List[str], wrapper: OptimWrapper,
                  data: dict, iters: int, warmup: int, device: torch.device,
                  reference=None
                  ) -> Tuple[Dict[str, List[float]], Optional[List[float]]]:
    """Seconds per run of each teacher alone, as the training step runs it
    (``model._run_teacher``: no grad, eval mode, its taps, the step's
    autocast) on the preprocessed (and batch-augmented) batch, by name; and
    with a ``reference``, of its teacher (timed in turn with them)."""
    with wrapper.optim_context(model), torch.no_grad():
        inputs = model.data_preprocessor(data, True)['inputs']
    runs = {}
    read = model.teachers_to_run(model.active_terms())
    for name in names:
        if name not in read:  # not run in this stage
            continue

        def run(name=name):
            with wrapper.optim_context(model):
                model._run_teacher(name, inputs, read.get(name, False))

        runs[f'teacher {name}'] = run
    if reference is not None:
        runs['reference teacher'] = lambda: reference.teacher_forward(inputs)
    times = _timed_in_turn(runs, iters, warmup, device)[0]
    return {
        label[len('teacher '):]: t
        for label, t in times.items() if label.startswith('teacher ')
    }, times.get('reference teacher')


def _peak_rss() -> Tuple[float, str]:
    """Peak resident set size of this process in MiB, and what it is."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    peak = peak / 2**20 if sys.platform == 'darwin' else peak / 2**10
    return peak, 'CPU: peak RSS of the whole process'


def _device_name(device: torch.device) -> str:
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    return (f'{platform.processor() or platform.machine()}, '
            f'{torch.get_num_threads()} threads')


def format_table(results: dict) -> str:
    """The results as a small two-column table."""
    size = results['input_size']
    rows = [
        ('config', results['config']),
        ('device', f'{results["device"]} ({results["device_name"]})'),
        ('precision', results['precision']),
        ('compile', 'yes' if results['compile'] else 'no'),
        ('channels-last', 'yes' if results['channels_last'] else 'no'),
        ('epoch', f'{results["epoch"]}: terms '
         f'{", ".join(results["active_terms"]) or "none"}; teachers run: '
         f'{", ".join(results["teachers_run"]) or "none"}'),
        ('batch x image', f'{results["batch_size"]} x 3x{size[0]}x{size[1]}'),
        ('timed steps', f'{results["iters"]} after {results["warmup"]} '
         f'warm-up'),
        ('images/s', f'{results["images_per_s"]:.1f}'),
        ('step time', f'{results["step_ms_mean"]:.2f} ms '
         f'+- {results["step_ms_std"]:.2f}'),
    ]
    guard = results.get('nonfinite_guard')
    rows.append(('non-finite guard',
                 'n/a' if guard is None else 'on' if guard else 'off'))
    if results.get('guard_off'):
        off = results['guard_off']
        rows += [
            ('step, guard off', f'{off["step_ms_mean"]:.2f} ms '
             f'+- {off["step_ms_std"]:.2f}'),
            ('guard cost', f'{100 * results["guard_cost"]:+.2f}% of the '
             f'step time (paired median: '
             f'{100 * results["guard_cost_paired"]:+.2f}%)'),
            ('guard check alone', f'{results["guard_check_ms"]:.3f} ms '
             f'({100 * results["guard_check_share"]:.2f}% of the step '
             f'without it)'),
        ]
    if results['teacher_ms']:
        step_ms = results['step_ms_mean']
        for name, ms in results['teacher_ms'].items():
            rows.append((f'teacher fwd ({name})',
                         f'{ms:.2f} ms ({100 * ms / step_ms:.1f}% of step)'))
        share = results['teacher_share']
        rows.append(('teacher share', f'{100 * share:.1f}%'))
    else:
        rows.append(('teacher share', 'n/a (no teacher)'))
    ref = results.get('reference')
    if ref:
        rows += [
            ('reference images/s', f'{ref["images_per_s"]:.1f}'),
            ('reference step', f'{ref["step_ms_mean"]:.2f} ms '
             f'+- {ref["step_ms_std"]:.2f}'),
            ('reference teacher', f'{ref["teacher_ms"]:.2f} ms '
             f'({100 * ref["teacher_share"]:.1f}% of step)'),
            ('cls_kd / reference', f'{results["speed_vs_reference"]:.3f}x '
             f'the speed'),
        ]
        if ref['peak_memory_mib'] is not None:
            rows.append(('reference peak', f'{ref["peak_memory_mib"]:.1f} '
                         f'MiB ({results["memory_vs_reference"]:.3f}x for '
                         f'cls_kd)'))
    replay = results.get('replay')
    if replay:
        for label, row in replay['rows'].items():
            rows.append((label, f'{row["step_ms_mean"]:.2f} ms '
                         f'+- {row["step_ms_std"]:.2f}, '
                         f'{row["images_per_s"]:.1f} images/s, '
                         f'{row["vs_student"]:.3f}x student alone (paired '
                         f'{row["vs_student_paired"]:.3f}x)'))
        for name, info in replay['store'].items():
            rows.append((f'store ({name})',
                         f'top-{info["topk"]} of {info["num_classes"]} '
                         f'classes, {info["dtype"]}, '
                         f'{info["bytes_per_sample"]} B per sample'))
    rows += [
        ('peak memory', f'{results["peak_memory_mib"]:.1f} MiB '
         f'({results["peak_memory_kind"]})'),
        ('optimizer groups', str(results['param_groups'])),
        ('trainable params', f'{results["trainable_params"] / 1e6:.3f} M'),
    ]
    width = max(len(key) for key, _ in rows)
    return '\n'.join(f'{key:<{width}}  {value}' for key, value in rows)


def _reference_module():
    sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
    try:
        import reference_step
    finally:
        sys.path.pop(0)
    return reference_step


def build_reference(model: nn.Module, cfg: Config, wrapper: OptimWrapper,
                    device: torch.device, compiled: bool):
    """The hand-written step of ``reference_step.py`` for ``model`` and its
    optimizer wrapper; a one-line error for a config it does not write
    out."""
    reference_step = _reference_module()
    try:
        reference = reference_step.ReferenceStep(model, cfg.model,
                                                 cfg.optim_wrapper, wrapper,
                                                 device)
    except reference_step.ReferenceUnsupported as e:
        _fail(f'--reference: {e}')
    if compiled:
        reference.compile()
    return reference


def _summary(times: List[float], batch_size: int) -> dict:
    return dict(
        images_per_s=batch_size * len(times) / sum(times),
        step_ms_mean=statistics.mean(times) * 1e3,
        step_ms_std=(statistics.stdev(times) if len(times) > 1 else 0.) *
        1e3,
        step_ms=[t * 1e3 for t in times])


def main(argv: Optional[List[str]] = None) -> dict:
    """Run the benchmark; returns the results (also printed, and written to
    ``--out`` if given)."""
    args = parse_args(argv)
    device = resolve_device(args.device)
    amp = choose_precision(args, device)
    cfg = load_config(args)
    torch.manual_seed(0)

    _log(f'Building the model of {args.config} ...')
    model, teacher_names = build_model(cfg)
    if args.replay:
        if not teacher_names:
            _fail(f'--replay: {args.config} has no teacher (model.teacher or '
                  f'model.teachers): there are no teacher outputs to replay.')
        digests = teacher_digests(model, teacher_names)
    model.to(device)
    model.train()
    if hasattr(model, 'set_progress'):
        # What the schedule hook does (iter: the epoch's first step).
        model.set_progress(epoch=args.epoch, iter=0)
    wrapper = build_wrapper(model, cfg, amp, device)
    guard = apply_guard(wrapper, args.guard)
    reference = None
    if args.reference:
        reference = build_reference(model, cfg, wrapper, device,
                                    args.compile)
    if args.channels_last:
        # The distiller's .to() moves its teachers too.
        for module in [model] + ([
                reference.student, reference.teacher, reference.connectors
        ] if reference else []):
            module.to(memory_format=torch.channels_last)
    if args.compile:
        compiled = compile_model(model)
        _log(f'Compiling {", ".join(compiled)}'
             f'{" and the reference step" if reference else ""} (the first '
             f'warm-up steps are slow).')
    if args.input_size is not None:
        size = (args.input_size, args.input_size)
    else:
        size = default_input_size(model)
    batch_size = args.batch_size or cfg.get('train_dataloader', {}).get(
        'batch_size') or 64
    data = make_batch(batch_size, size, num_classes_of(model))
    if device.type == 'cuda':  # as a DataLoader with pin_memory=True
        data['inputs'] = [image.pin_memory() for image in data['inputs']]
    steps = {'cls_kd': lambda: model.train_step(data, wrapper)}
    if args.guard == 'both':
        steps.update(guard_steps(model, wrapper, data))
    if reference is not None:
        images = torch.stack(data['inputs'])
        labels = torch.cat([s.gt_label for s in data['data_samples']])
        if device.type == 'cuda':
            images, labels = images.pin_memory(), labels.pin_memory()
        steps['reference'] = lambda: reference.step(images, labels)
    replay_dir = None
    if args.replay:
        replay_dir = tempfile.TemporaryDirectory(prefix='cls_kd_replay_')
        steps, store = replay_steps(args, cfg, model, steps['cls_kd'],
                                    digests, data, replay_dir.name, amp,
                                    device)

    _log(f'Timing {args.iters} training steps of {batch_size} images '
         f'({size[0]}x{size[1]}) on {device} after {args.warmup} warm-up '
         f'steps{", in turn with the reference" if reference else ""} ...')
    step_times, peaks = _timed_in_turn(steps, args.iters, args.warmup,
                                       device)
    if replay_dir is not None:
        replay_dir.cleanup()
        # The config as is: the results' main row.
        step_times['cls_kd'] = step_times['online KD']
        if 'online KD' in peaks:
            peaks['cls_kd'] = peaks['online KD']
    teacher_times, reference_teacher = time_teachers(
        model, teacher_names, wrapper, data, args.iters, args.warmup, device,
        reference)
    guard_check = (time_guard_check(model, wrapper, data, args.iters,
                                    args.warmup, device)
                   if args.guard == 'both' else None)
    if device.type == 'cuda':
        peak_kind = 'CUDA max_memory_allocated, training steps'
        if reference is not None:
            peak_kind += ", without the other side's weights and " \
                'optimizer state'
            peaks['cls_kd'] -= reference.resident_bytes()
            peaks['reference'] -= _reference_module().resident_bytes(
                [model, *model.teachers.values()], wrapper.optimizer)
        peak = peaks['cls_kd'] / 2**20
    else:
        peak, peak_kind = _peak_rss()

    terms = ([term.name for term, _ in model.active_terms()]
             if hasattr(model, 'active_terms') else [])
    step_mean = statistics.mean(step_times['cls_kd'])
    teacher_ms = {
        name: statistics.mean(times) * 1e3
        for name, times in teacher_times.items()
    }
    results = dict(
        config=args.config,
        device=device.type,
        device_name=_device_name(device),
        torch=torch.__version__,
        precision=f'{amp.dtype} autocast ({amp.wrapper})' if amp else 'fp32',
        amp=amp is not None,
        amp_reason=amp.reason if amp else None,
        compile=args.compile,
        channels_last=args.channels_last,
        epoch=args.epoch,
        active_terms=terms,
        teachers_run=sorted(teacher_ms),
        batch_size=batch_size,
        input_size=list(size),
        iters=args.iters,
        warmup=args.warmup,
        **_summary(step_times['cls_kd'], batch_size),
        teacher_ms=teacher_ms,
        teacher_share=(sum(teacher_ms.values()) / (step_mean * 1e3)
                       if teacher_ms else None),
        peak_memory_mib=peak,
        peak_memory_kind=peak_kind,
        param_groups=len(wrapper.optimizer.param_groups),
        trainable_params=sum(
            p.numel() for group in wrapper.optimizer.param_groups
            for p in group['params']),
        reference=None,
        replay=None,
        nonfinite_guard=guard,
    )
    if args.guard == 'both':
        results.update(
            guard_results(step_times['cls_kd'], step_times['guard off'],
                          guard_check, batch_size))
    if reference is not None:
        results['reference'] = reference_results(
            step_times['reference'], reference_teacher,
            peaks.get('reference'), batch_size, args.compile)
        ref = results['reference']
        results['speed_vs_reference'] = (results['images_per_s'] /
                                         ref['images_per_s'])
        results['memory_vs_reference'] = (
            peak / ref['peak_memory_mib']
            if ref['peak_memory_mib'] else None)
    if replay_dir is not None:
        results['replay'] = replay_results(step_times, peaks, batch_size,
                                           store)
    _log()
    _log(format_table(results))
    if results['replay']:
        _log(results['replay']['conclusion'])
    if args.out:
        out_dir = osp.dirname(osp.abspath(args.out))
        os.makedirs(out_dir, exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=2)
        _log(f'Results written to {args.out}')
    return results


def reference_results(times: List[float], teacher: List[float],
                      peak: Optional[int], batch_size: int,
                      compiled: bool) -> dict:
    """The reference's speed, teacher time and peak memory."""
    summary = _summary(times, batch_size)
    teacher_ms = statistics.mean(teacher) * 1e3
    return dict(
        **summary,
        teacher_ms=teacher_ms,
        teacher_share=teacher_ms / summary['step_ms_mean'],
        peak_memory_mib=peak / 2**20 if peak is not None else None,
        compile=compiled,
    )


if __name__ == '__main__':
    main()
