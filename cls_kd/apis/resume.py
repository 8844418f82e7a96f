"""Which checkpoint ``tools/train.py --resume`` continues from (settled by
:func:`cls_kd.apis.prepare_training` before the Runner is built).

mmengine's auto-resume trusts ``<work_dir>/last_checkpoint``: when that file
is empty (a kill while it was rewritten) it fails with ``FileNotFoundError:
 can not be found``; when it names a truncated checkpoint the run cannot
resume; and when the work dir holds no checkpoint it silently trains from
scratch. Here the candidates are the checkpoint files themselves, newest
first, and each is checked before it is chosen.
"""
import os
import os.path as osp
import re
import warnings
import zipfile
from typing import List, Optional, Sequence

import torch
from mmengine.config import Config

__all__ = ['checkpoint_problem', 'find_resume_checkpoint', 'resolve_resume']

_CKPT_NAME = re.compile(r'^(epoch|iter)_(\d+)\.pth$')


def checkpoint_problem(path: str) -> Optional[str]:
    """Why ``path`` cannot be resumed from, or None when it loads.

    Cheap: the tensors are memory-mapped, not read; a truncated file has no
    zip central directory and fails before anything is unpickled.

    Args:
        path (str): A training checkpoint written by mmengine's Runner.

    Returns:
        str | None: The reason (``'empty file'``, ``'truncated ...'``, the
        loading error), or None for a complete checkpoint.
    """
    if not osp.isfile(path):
        return 'no such file'
    if osp.getsize(path) == 0:
        return 'empty file'
    if not zipfile.is_zipfile(path):
        return 'truncated or not a torch checkpoint (no zip directory)'
    try:
        # Our own training checkpoints (mmengine objects inside): trusted.
        checkpoint = torch.load(
            path, map_location='cpu', mmap=True, weights_only=False)
    except Exception as error:  # any unpickling failure means unusable
        return f'{type(error).__name__}: {error}'
    if not isinstance(checkpoint, dict) or not {'meta', 'state_dict'} <= set(
            checkpoint):
        return 'not a training checkpoint (no meta/state_dict)'
    return None


def _candidates(folders: Sequence[str]) -> List[str]:
    """``epoch_N.pth`` / ``iter_N.pth`` in ``folders``, newest first: by N
    within a kind; when both kinds exist, the kind written last first."""
    by_kind = {}
    for folder in dict.fromkeys(folders):  # unique, in order
        if not osp.isdir(folder):
            continue
        for name in os.listdir(folder):
            match = _CKPT_NAME.match(name)
            if match:
                by_kind.setdefault(match.group(1), []).append(
                    (int(match.group(2)), osp.join(folder, name)))
    groups = sorted(
        by_kind.values(),
        key=lambda group: max(osp.getmtime(p) for _, p in group),
        reverse=True)
    return [path for group in groups for _, path in sorted(group,
                                                            reverse=True)]


def _last_checkpoint_folder(work_dir: str) -> Optional[str]:
    """The folder named by ``<work_dir>/last_checkpoint``, if it names one."""
    record = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(record):
        return None
    with open(record) as f:
        target = f.read().strip()
    if not target:
        warnings.warn(f'{record} is empty (a run killed while writing it); '
                      f'looking for checkpoints in the folder instead.')
        return None
    return osp.dirname(target)


def find_resume_checkpoint(folders: Sequence[str]) -> Optional[str]:
    """The newest checkpoint in ``folders`` that loads; each newer one that
    does not is skipped with a warning that names it and why.

    Args:
        folders (Sequence[str]): Where the checkpoint hook wrote (the work
            dir, its ``out_dir`` folder, the folder ``last_checkpoint``
            names).

    Returns:
        str | None: The checkpoint to resume from, None when there is none.
    """
    for path in _candidates(folders):
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        warnings.warn(f'Skipping checkpoint {path} for --resume: {problem}. '
                      f'Falling back to the previous one.')
    return None


def resolve_resume(cfg: Config, required: bool) -> Optional[str]:
    """Pick the checkpoint a ``resume=True`` config continues from, before
    the Runner is built, and set ``cfg.load_from`` to it.

    - ``load_from`` given (``--resume CKPT``): it must exist and load.
    - Otherwise the newest loadable ``epoch_*.pth`` / ``iter_*.pth`` of the
      work dir (and of the checkpoint hook's ``out_dir``), skipping broken
      ones with a warning; ``last_checkpoint`` is not trusted.
    - Nothing to resume: an error when ``required`` (``--resume`` given on
      the command line), else a warning and training from scratch.

    Args:
        cfg (Config): The merged config (``work_dir`` set).
        required (bool): Whether resuming was asked for explicitly.

    Returns:
        str | None: The checkpoint resumed from, None when not resuming.
    """
    if not cfg.get('resume'):
        return None
    if cfg.get('load_from'):
        path = cfg.load_from
        if '://' not in path:
            problem = checkpoint_problem(path)
            if problem is not None:
                raise FileNotFoundError(
                    f'Cannot resume from {path}: {problem}. Use --resume '
                    f'without a path to continue from the newest good '
                    f'checkpoint of the work dir.')
    else:
        path = _newest_in_work_dir(cfg, required)
        if path is None:
            return None
    note = _random_state_note(cfg)
    if note:
        print(note)
    return path


def _newest_in_work_dir(cfg: Config, required: bool) -> Optional[str]:
    """Set ``cfg.load_from`` to the newest loadable checkpoint of the work
    dir; with none, raise (``required``) or turn resuming off loudly."""
    work_dir = cfg.work_dir
    folders = [work_dir]
    out_dir = (cfg.get('default_hooks') or {}).get('checkpoint', {}).get(
        'out_dir')
    if out_dir:
        folders.append(osp.join(out_dir, osp.basename(work_dir.rstrip('/'))))
    last_folder = _last_checkpoint_folder(work_dir)
    if last_folder:
        folders.append(last_folder)
    path = find_resume_checkpoint(folders)
    if path is None:
        message = (f'Nothing to resume: no loadable epoch_*.pth or '
                   f'iter_*.pth checkpoint in the work dir '
                   f'{osp.abspath(work_dir)}')
        if required:
            raise FileNotFoundError(
                f'{message}. Drop --resume to train from scratch, or pass '
                f'--resume CKPT.')
        warnings.warn(f'{message}; the config sets resume=True: TRAINING '
                      f'FROM SCRATCH.')
        cfg.resume = False
        return None
    print(f'Resuming from {path}')
    cfg.load_from = path
    return path


def _random_state_note(cfg: Config) -> Optional[str]:
    """Why a resumed run will not repeat the uninterrupted one's random
    augmentations, or None when it will (see README, "Resuming")."""
    loader = cfg.get('train_dataloader') or {}
    if loader.get('num_workers', 0) == 0:
        where = 'num_workers=0: augmentations draw from the main process'
    elif loader.get('persistent_workers', False):
        where = ('persistent_workers=True: the workers\' random streams '
                 'run on across epochs')
    else:
        return None
    return (f'Note: the random state of data augmentation is not saved in '
            f'checkpoints ({where}); the resumed run will differ slightly '
            f'from an uninterrupted one (README, "Resuming").')
