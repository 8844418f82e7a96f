"""Config checks and fixes that ``tools/train.py`` (through
:func:`cls_kd.apis.prepare_training`) and ``tools/test.py`` run before
building the Runner: a short run fits its schedule (lr and
distillation stages), and a missing dataset, an unfinished synthesis folder
or a class count that differs from the model's is reported with how to fix
it."""
import os
import os.path as osp
from typing import List, Sequence

from mmengine.config import Config

from cls_kd.datasets.checks import (
    check_num_classes,
    check_synthesis_finished,
    dataset_chain,
    image_folder,
)

__all__ = ['fit_schedulers_to_max_epochs', 'check_data_roots']


def _fit_scheduler_list(schedulers: list, max_epochs: int,
                        notes: List[str]) -> list:
    """Clip the ends of one list's epoch-based schedulers to
    ``max_epochs`` and drop those that start at or after it; returns the
    kept ones (``notes`` gets one line per change)."""
    kept = []
    for scheduler in schedulers:
        name = scheduler.get('type', '?')
        begin = scheduler.get('begin', 0)
        end = scheduler.get('end')
        if not scheduler.get('by_epoch', True):
            kept.append(scheduler)
        elif begin >= max_epochs:
            notes.append(f'{name} (begin={begin}) dropped: it would start '
                         f'at or after the last epoch')
        else:
            if end is not None and end > max_epochs:
                notes.append(f'{name} end {end} -> {max_epochs}')
                scheduler['end'] = max_epochs
            kept.append(scheduler)
    return kept


def _fit_stages(cfg: Config, max_epochs: int) -> List[str]:
    """Fit a distiller's epoch-based ``model.stages`` and a
    ``StopDistillHook`` by the lr rule; returns one note per change."""

    def beyond(epoch) -> bool:
        # Values that are not numbers are the distiller's to refuse.
        return isinstance(epoch, (int, float)) and epoch >= max_epochs

    notes: List[str] = []
    stages = (cfg.get('model') or {}).get('stages')
    if stages and all(s.get('by', 'epoch') == 'epoch' for s in stages):
        kept, begin = [], 0
        for i, stage in enumerate(stages):
            if beyond(begin):
                notes.append(f'model.stages[{i}] (begin={begin}) dropped: '
                             f'it would start at or after the last epoch')
            else:
                kept.append(stage)
            begin = stage.get('end')
        if len(kept) < len(stages):
            # The last stage has no end: the new last one runs to the end.
            notes.insert(0, f'model.stages[{len(kept) - 1}] end '
                         f'{kept[-1].pop("end")} -> none (the last stage)')
            cfg.model['stages'] = kept
    for hook in cfg.get('custom_hooks') or []:
        kind = str(hook.get('type', ''))
        if kind.split('.')[-1] == 'StopDistillHook' and beyond(
                hook.get('stop_epoch')):
            notes.append(f'custom_hooks: {kind} (stop_epoch='
                         f'{hook["stop_epoch"]}) -> DistillScheduleHook: it '
                         f'would stop at or after the last epoch')
            hook.clear()
            hook['type'] = kind.replace('StopDistillHook',
                                        'DistillScheduleHook')
    return notes


def fit_schedulers_to_max_epochs(cfg: Config) -> List[str]:
    """Fit the epoch-based ``param_scheduler`` entries and distillation
    stages to a shortened ``train_cfg.max_epochs`` (e.g. a 1-epoch smoke run
    of a 40-epoch config), which mmengine otherwise refuses (``begin=2,
    end=2``) or, for stages, would run without ever reaching them.

    One rule for both: what starts at or after ``max_epochs`` is dropped (it
    would never act) and an end beyond it is clipped, so that warm-ups and
    decays finish within the run. For the distiller's ``model.stages``
    (e.g. DearKD's switch at epoch 250 in a 2-epoch run) the stages that
    start at or after ``max_epochs`` are dropped and the last kept stage
    loses its end (it runs to the end, as a last stage does); a
    ``StopDistillHook`` whose ``stop_epoch`` is at or after ``max_epochs``
    becomes a plain ``DistillScheduleHook``. The distiller's summary then
    shows the fitted stages. Iteration-based schedulers and stages
    (``by='iter'``), and iteration-based training, are left alone (the
    schedule hook warns at the start of training about a stage the run
    cannot reach). Each change is printed.

    Args:
        cfg (Config): The merged config; changed in place.

    Returns:
        list[str]: One note per change (empty when the schedule fits).
    """
    train_cfg = cfg.get('train_cfg') or {}
    max_epochs = train_cfg.get('max_epochs')
    schedulers = cfg.get('param_scheduler')
    if not max_epochs or train_cfg.get('by_epoch') is False:
        return []
    notes: List[str] = []
    if isinstance(schedulers, dict) and 'type' not in schedulers:
        # One list per optimizer (OptimWrapperDict).
        for key, value in schedulers.items():
            value = value if isinstance(value, list) else [value]
            schedulers[key] = _fit_scheduler_list(value, max_epochs, notes)
    elif schedulers:
        value = schedulers if isinstance(schedulers, list) else [schedulers]
        cfg.param_scheduler = _fit_scheduler_list(value, max_epochs, notes)
    for note in notes:
        print(f'param_scheduler fitted to max_epochs={max_epochs}: {note}')
    stage_notes = _fit_stages(cfg, max_epochs)
    for note in stage_notes:
        print(f'distillation stages fitted to max_epochs={max_epochs}: '
              f'{note}')
    return notes + stage_notes


def _missing_hint(root: str, key: str) -> str:
    if osp.basename(osp.normpath(root)) == 'digits':
        how = (f'Write it with `python tools/dataset_converters/digits.py '
               f'--out {root}`')
    else:
        how = "Prepare it as the config folder's README says"
    return (f'{how}, or point the config at it with --cfg-options '
            f'{key}.dataset.data_root=<folder> (working directory: '
            f'{os.getcwd()}).')


def check_data_roots(cfg: Config, loaders: Sequence[str]) -> None:
    """Fail early, with what to do, when a dataloader's data folder is
    missing (instead of a bare ``FileNotFoundError`` from deep inside the
    dataset once the model is built), holds an unfinished synthesis run
    (instead of training on part of it), or has another number of classes
    than the model's head (instead of an ``IndexError`` mid-epoch).

    Args:
        cfg (Config): The merged config.
        loaders (Sequence[str]): The dataloaders the run uses, e.g.
            ``('train_dataloader', 'val_dataloader')``.

    Raises:
        FileNotFoundError: naming the loader, the folder (absolute) and the
            tool or option that provides it.
        DatasetCheckError: an unfinished synthesis folder (with the command
            that finishes it) or a class count that differs from the
            model's ``num_classes`` (both numbers; see
            :mod:`cls_kd.datasets.checks`).
    """
    for key in loaders:
        loader = cfg.get(key)
        if not loader:
            continue
        for dataset in dataset_chain(loader.get('dataset')):
            images = image_folder(dataset)
            if images is None:
                continue
            root = dataset['data_root']
            for folder in (root, images):
                if not osp.isdir(folder):
                    raise FileNotFoundError(
                        f'The data folder of {key} does not exist: {folder} '
                        f'({osp.abspath(folder)}). '
                        f'{_missing_hint(root, key)}')
            check_synthesis_finished(images, key)
        check_num_classes(loader.get('dataset'), cfg.get('model'), key)
