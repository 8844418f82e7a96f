"""Config checks and fixes that ``tools/train.py`` and ``tools/test.py`` run
before building the Runner: a short run fits its schedule, and a missing
dataset is reported with how to get it."""
import os
import os.path as osp
from typing import List, Sequence

from mmengine.config import Config

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


def fit_schedulers_to_max_epochs(cfg: Config) -> List[str]:
    """Fit the epoch-based ``param_scheduler`` entries to a shortened
    ``train_cfg.max_epochs`` (e.g. a 1-epoch smoke run of a 40-epoch
    config), which mmengine otherwise refuses (``begin=2, end=2``).

    Schedulers that start at or after ``max_epochs`` are dropped (they would
    never act); ends beyond it are clipped to it, so that warm-ups and decays
    finish within the run. Iteration-based schedulers and iteration-based
    training are left alone. Each change is printed.

    Args:
        cfg (Config): The merged config; changed in place.

    Returns:
        list[str]: One note per change (empty when the schedule fits).
    """
    train_cfg = cfg.get('train_cfg') or {}
    max_epochs = train_cfg.get('max_epochs')
    schedulers = cfg.get('param_scheduler')
    if not max_epochs or not schedulers or train_cfg.get('by_epoch') is False:
        return []
    notes: List[str] = []
    if isinstance(schedulers, dict) and 'type' not in schedulers:
        # One list per optimizer (OptimWrapperDict).
        for key, value in schedulers.items():
            value = value if isinstance(value, list) else [value]
            schedulers[key] = _fit_scheduler_list(value, max_epochs, notes)
    else:
        value = schedulers if isinstance(schedulers, list) else [schedulers]
        cfg.param_scheduler = _fit_scheduler_list(value, max_epochs, notes)
    for note in notes:
        print(f'param_scheduler fitted to max_epochs={max_epochs}: {note}')
    return notes


def _datasets(dataset: dict):
    """The dataset and the ones it wraps (ClassBalancedDataset, ...)."""
    while isinstance(dataset, dict):
        yield dataset
        dataset = dataset.get('dataset')


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
    dataset once the model is built).

    Args:
        cfg (Config): The merged config.
        loaders (Sequence[str]): The dataloaders the run uses, e.g.
            ``('train_dataloader', 'val_dataloader')``.

    Raises:
        FileNotFoundError: naming the loader, the folder (absolute) and the
            tool or option that provides it.
    """
    for key in loaders:
        loader = cfg.get(key)
        if not loader:
            continue
        for dataset in _datasets(loader.get('dataset')):
            root = dataset.get('data_root')
            if not isinstance(root, str) or '://' in root:
                continue
            prefix = dataset.get('data_prefix')
            if isinstance(prefix, dict):
                prefix = prefix.get('img_path') or prefix.get('img')
            for folder in (root, osp.join(root, prefix or '')):
                if not osp.isdir(folder):
                    raise FileNotFoundError(
                        f'The data folder of {key} does not exist: {folder} '
                        f'({osp.abspath(folder)}). '
                        f'{_missing_hint(root, key)}')
