"""What ``tools/train.py`` does to a loaded config (:func:`load_config`)
before it builds the Runner, in one place and in a fixed order
(:func:`prepare_training`)."""
import argparse
import importlib.util

import torch
from mmengine.config import Config
from mmengine.runner import Runner

from cls_kd.engine.hooks import add_schedule_hook
from cls_kd.utils import (
    AmpUnavailableError,
    apply_amp,
    choose_amp,
    compile_options,
)

from .launch import apply_launch_args
from .resume import resolve_resume
from .run_checks import check_data_roots, fit_schedulers_to_max_epochs

__all__ = [
    'OptionError', 'apply_training_args', 'prepare_training',
    'scale_base_lr_too'
]


class OptionError(ValueError):
    """A command-line option that cannot be applied to the config; the tool
    reports it as a usage error (``train.py: error: ...``)."""


def _option(args: argparse.Namespace, name: str, default=None):
    """An option of ``tools/train.py``; one that ``args`` lacks counts as
    not given."""
    return getattr(args, name, default)


def apply_amp_args(cfg: Config, force: bool) -> None:
    """``--amp``: the precision :func:`~cls_kd.utils.choose_amp` picks for
    the device training runs on, printed; refused where it would only slow
    training down (a CPU that emulates bfloat16) unless ``force``.

    Raises:
        OptionError: ``--amp`` refused (the message says why and names
            ``--amp-force``).
    """
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        choice = choose_amp(device, force=force)
    except AmpUnavailableError as e:
        raise OptionError(str(e)) from None
    print(choice.describe(), flush=True)
    cfg.optim_wrapper, note = apply_amp(cfg.optim_wrapper, choice)
    print(note or f'--amp: the config already uses {choice.wrapper} '
          f'({choice.dtype}).', flush=True)


def add_tensorboard(cfg: Config) -> None:
    """``--tensorboard``: add mmengine's ``TensorboardVisBackend`` to the
    visualizer's backends (``--cfg-options`` cannot: it parses no list of
    dicts).

    Raises:
        OptionError: The tensorboard package is not installed.
    """
    if importlib.util.find_spec('tensorboard') is None:
        raise OptionError(
            '--tensorboard needs the tensorboard package: '
            "pip install 'cls_kd[tensorboard]' (or pip install tensorboard).")
    if cfg.get('visualizer') is None:
        cfg.visualizer = dict(type='UniversalVisualizer', vis_backends=[])
    backends = list(cfg.visualizer.get('vis_backends') or [])
    if not any(b.get('type') == 'TensorboardVisBackend' for b in backends):
        backends.append(dict(type='TensorboardVisBackend'))
    cfg.visualizer.vis_backends = backends


def apply_compile_args(cfg: Config, flag: bool) -> None:
    """``--compile`` / the config's ``compile``: a :class:`CompileHook` with
    its options; the key is taken away from mmengine's runner.

    Raises:
        OptionError: ``compile`` holds an unknown ``torch.compile`` option.
    """
    value = cfg.pop('compile', None)
    if flag and not value:
        value = True
    try:
        options = compile_options(value)
    except ValueError as e:
        raise OptionError(str(e)) from None
    if options is None:
        return
    hooks = [
        h for h in (cfg.get('custom_hooks') or [])
        if str(h.get('type', '')).split('.')[-1] != 'CompileHook'
    ]
    cfg.custom_hooks = hooks + [dict(type='cls_kd.CompileHook', **options)]


def apply_training_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply ``tools/train.py``'s options to a loaded config, in this order
    (steps 1-8 of :func:`prepare_training`):

    1. ``--work-dir`` (default ``./work_dirs/<config name>``) and
       ``--launcher`` (:func:`~cls_kd.apis.apply_launch_args`);
    2. ``--amp`` / ``--amp-force``: the config's optimizer wrapper becomes
       an autocast one that keeps its non-finite guard settings;
    3. ``--compile`` or the config's ``compile``: a ``CompileHook``;
    4. ``--tensorboard``: a TensorBoard backend for the visualizer;
    5. ``--resume [CKPT]``: ``resume=True`` and ``load_from`` CKPT (none:
       the newest good checkpoint of the work dir, found in step 11);
    6. ``--no-validate``: no validation loop;
    7. ``--auto-scale-lr``: ``auto_scale_lr.enable=True``;
    8. the ``DistillScheduleHook`` that distillers read their stages and
       term schedules from (:func:`~cls_kd.engine.hooks.add_schedule_hook`).

    ``--cfg-options`` are applied before, by :func:`load_config`, so that
    every step sees them (e.g. ``optim_wrapper.skip_nonfinite=False`` with
    ``--amp``).

    Args:
        cfg (Config): A config from :func:`load_config`; changed in place.
        args (argparse.Namespace): The options of ``tools/train.py``; one it
            lacks counts as not given.

    Returns:
        Config: ``cfg``.

    Raises:
        OptionError: An option that cannot be applied (``--amp`` on a CPU
            without native bfloat16, ``--tensorboard`` without the package,
            an unknown ``compile`` option).
    """
    apply_launch_args(cfg, _option(args, 'config') or cfg.filename,
                      _option(args, 'work_dir'),
                      _option(args, 'launcher', 'none'))
    if _option(args, 'amp') or _option(args, 'amp_force'):
        apply_amp_args(cfg, bool(_option(args, 'amp_force')))
    apply_compile_args(cfg, bool(_option(args, 'compile')))
    if _option(args, 'tensorboard'):
        add_tensorboard(cfg)
    resume = _option(args, 'resume')
    if resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif resume is not None:
        cfg.resume, cfg.load_from = True, resume
    if _option(args, 'no_validate'):
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    if _option(args, 'auto_scale_lr'):
        cfg.auto_scale_lr = dict(cfg.get('auto_scale_lr', {}), enable=True)
    add_schedule_hook(cfg)
    return cfg


def prepare_training(cfg: Config, args: argparse.Namespace) -> Config:
    """Everything ``tools/train.py`` does to a loaded config before it
    builds the Runner, so that a bad option, missing data, a schedule longer
    than the run or nothing to resume from stop the run before any work:

    1-8. the options (:func:`apply_training_args`);
    9. the data folders of the train and val loaders checked (after step 6:
       with ``--no-validate`` the val folder is not needed;
       :func:`~cls_kd.apis.check_data_roots`);
    10. epoch-based lr schedulers and distillation stages fitted to a
        shortened ``train_cfg.max_epochs``
        (:func:`~cls_kd.apis.fit_schedulers_to_max_epochs`);
    11. with ``resume``, the checkpoint to continue from chosen and checked
        (:func:`~cls_kd.apis.resolve_resume`; required with ``--resume``
        without a path, which then fails when there is none).

    Args:
        cfg (Config): A config from :func:`load_config` (``--cfg-options``
            applied); changed in place.
        args (argparse.Namespace): The options of ``tools/train.py``.

    Returns:
        Config: ``cfg``, ready for the Runner.

    Raises:
        OptionError: See :func:`apply_training_args`.
        FileNotFoundError: A missing data folder or checkpoint.
        DatasetCheckError: An unfinished synthesis folder or a class count
            that differs from the model's.
    """
    apply_training_args(cfg, args)
    check_data_roots(cfg, ('train_dataloader', 'val_dataloader'))
    fit_schedulers_to_max_epochs(cfg)
    resolve_resume(cfg, required=_option(args, 'resume') == 'auto')
    return cfg


def scale_base_lr_too(runner: Runner) -> None:
    """With ``auto_scale_lr`` enabled, scale the base lr that mmengine logs
    (``base_lr``, kept by an optimizer wrapper with several parameter
    groups) with the groups' lrs, and print both; mmengine scales only the
    groups, so the log showed the config's unscaled lr.

    Args:
        runner (Runner): The training run's Runner, before ``train()``.
    """
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
