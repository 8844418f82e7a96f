"""Checks of a run's datasets before any work, from the config alone: a
synthesis folder whose run is unfinished, and a dataset whose class count
differs from the model's ``num_classes`` (which would otherwise fail
mid-epoch with ``IndexError: Target 10 is out of bounds``, or shift the
labels of a folder that lacks a class)."""
import math
import os.path as osp
from typing import Iterator, Optional, Tuple

from mmengine.fileio import list_from_file

from cls_kd.registry import DATASETS

__all__ = [
    'DatasetCheckError', 'dataset_chain', 'image_folder',
    'dataset_num_classes', 'model_num_classes', 'check_num_classes',
    'check_synthesis_finished'
]


class DatasetCheckError(ValueError):
    """A dataset that does not fit the run; the message names the loader,
    the folder or the numbers that differ, and what to do."""


def dataset_chain(dataset) -> Iterator[dict]:
    """A dataset config and the ones it wraps (``ClassBalancedDataset``,
    ``SubsetDataset``, ...), outermost first."""
    while isinstance(dataset, dict):
        yield dataset
        dataset = dataset.get('dataset')


def image_folder(dataset: dict) -> Optional[str]:
    """The local folder a dataset config reads its images from:
    ``data_root`` joined with ``data_prefix`` (its ``img_path`` or ``img``
    when a dict), as mmengine joins them; None without a local
    ``data_root``."""
    root = dataset.get('data_root')
    if not isinstance(root, str) or '://' in root:
        return None
    prefix = dataset.get('data_prefix')
    if isinstance(prefix, dict):
        prefix = prefix.get('img_path') or prefix.get('img')
    return osp.join(root, prefix or '')


def dataset_num_classes(dataset: dict) -> Optional[Tuple[int, str]]:
    """The number of classes a dataset config gives its samples, counted as
    mmpretrain does without reading any image: the ``classes`` (or
    ``metainfo.classes``) it is given (a list, or a file with one name a
    line), else its type's ``METAINFO`` classes (``ImageNet``: 1000), else,
    for a ``CustomDataset`` read from folders, its class folders.

    Args:
        dataset (dict): The loader's ``dataset`` config (wrappers are
            followed to the dataset they wrap).

    Returns:
        tuple | None: ``(count, where it was counted)``; None when the
        dataset has no labels or its classes are only known once its
        annotations are read.
    """
    from mmpretrain.datasets.custom import CustomDataset, find_folders

    inner = list(dataset_chain(dataset))[-1]
    if inner.get('with_label') is False:
        return None
    classes = inner.get('classes')
    if classes is None:
        classes = (inner.get('metainfo') or {}).get('classes')
    if isinstance(classes, str):
        path = osp.expanduser(classes)
        if not osp.isfile(path):
            return None  # mmpretrain reports the missing file
        return len(list_from_file(path)), f'the class names in {classes}'
    if classes is not None:
        return len(classes), 'its classes'
    cls = inner.get('type')
    cls = DATASETS.get(cls) if isinstance(cls, str) else cls
    if not isinstance(cls, type):
        return None
    classes = (getattr(cls, 'METAINFO', None) or {}).get('classes')
    if classes:
        return len(classes), f"{cls.__name__}'s classes"
    folder = image_folder(inner)
    if issubclass(cls, CustomDataset) and not inner.get('ann_file') and \
            folder is not None and osp.isdir(folder):
        count = len(find_folders(folder)[0])
        return count, f'{count} class folders in {folder}'
    return None


def model_num_classes(model: dict) -> Optional[Tuple[int, str]]:
    """The number of classes a model config's head scores, and its key: for
    a distiller, the student's (``model.student.head.num_classes``); for
    a timm or Hugging Face classifier, its ``num_classes``. Teachers are
    not counted: no label indexes their logits (a teacher scoring other
    classes than the student fails the build's dry run of a logit loss).

    Args:
        model (dict): The config's ``model``.

    Returns:
        tuple | None: ``(num_classes, key)``; None for a model without a
        classification head (a bare backbone, a k-NN evaluated student).
    """
    key = 'model'
    if isinstance(model.get('student'), dict):
        model, key = model['student'], 'model.student'
    head = model.get('head')
    if isinstance(head, dict) and isinstance(head.get('num_classes'), int):
        return head['num_classes'], f'{key}.head.num_classes'
    if isinstance(model.get('num_classes'), int):
        return model['num_classes'], f'{key}.num_classes'
    return None


def check_num_classes(dataset: dict, model: dict, key: str) -> None:
    """Refuse a dataset whose class count (:func:`dataset_num_classes`)
    differs from the model's (:func:`model_num_classes`); pass when either
    is unknown.

    Args:
        dataset (dict): The loader's ``dataset`` config.
        model (dict): The config's ``model``.
        key (str): The loader, e.g. ``'train_dataloader'``.

    Raises:
        DatasetCheckError: Names the loader and both numbers.
    """
    counted = dataset_num_classes(dataset) if dataset else None
    head = model_num_classes(model) if model else None
    if counted is None or head is None or counted[0] == head[0]:
        return
    (count, where), (num_classes, head_key) = counted, head
    raise DatasetCheckError(
        f'The dataset of {key} has {count} classes ({where}), but the model '
        f'scores {num_classes} ({head_key}={num_classes}): its labels would '
        f'not match the head. Set {head_key}={count}, or give the dataset '
        f'the model\'s {num_classes} classes.')


def check_synthesis_finished(folder: str, key: str) -> None:
    """Refuse a folder of ``tools/synthesize.py`` (``folder`` being the
    ``--out`` folder or its ``train/``) whose manifest says the run is
    unfinished: training on it would use a partial set, and may read an
    image still being written.

    Args:
        folder (str): The folder a dataset reads its images from.
        key (str): The loader, e.g. ``'train_dataloader'``.

    Raises:
        DatasetCheckError: Names the folder, how many batches are done and
            the command that finishes the run.
    """
    # Not at the top: cls_kd.datafree imports the models, whose stored
    # teacher outputs import this package (datasets sit below models).
    from cls_kd.datafree.output import (
        SynthesisOutput,
        find_synthesis,
        finish_command,
    )
    found = find_synthesis(folder)
    if found is None or found[1].get('complete'):
        return
    root, manifest = found
    settings = manifest['synthesis']
    batches = math.ceil(settings['num_images'] / settings['batch_size'])
    output = SynthesisOutput(root, manifest.get('folders', []), False)
    done = sum(output.done(b) for b in range(batches))
    raise DatasetCheckError(
        f'The data folder of {key} holds an unfinished synthesis run: '
        f'{root} ({done} of {batches} batches done; manifest.json has '
        f'"complete": false). Training on it would use a partial set. '
        f'Finish it first with: {finish_command(root, manifest)}')
