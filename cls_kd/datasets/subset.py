"""A fixed, seeded fraction of a dataset: training on 10/25/50 % of the
images, the same images in every run, process and resume."""
import copy
from typing import List, Optional, Union

import numpy as np
from mmengine.dataset import BaseDataset

from cls_kd.registry import DATASETS

__all__ = ['SubsetDataset', 'subset_indices']


def subset_indices(labels: List[int], fraction: float, seed: int,
                   per_class: bool = True) -> List[int]:
    """The indices a :class:`SubsetDataset` keeps, in ascending order.

    Args:
        labels (list[int]): The class of every sample.
        fraction (float): The share to keep, in (0, 1].
        seed (int): Seed of the draw; the same seed gives the same subset.
        per_class (bool): Draw ``round(fraction * n_c)`` (at least one) of
            every class's ``n_c`` samples, so the class balance is kept;
            otherwise ``round(fraction * n)`` of all. Defaults to True.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f'SubsetDataset: fraction must be in (0, 1], got '
                         f'{fraction}.')
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    if not per_class:
        count = max(1, int(round(fraction * len(labels))))
        return sorted(rng.choice(len(labels), count, replace=False).tolist())
    keep = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = max(1, int(round(fraction * len(members))))
        keep.extend(rng.choice(members, count, replace=False).tolist())
    return sorted(keep)


@DATASETS.register_module()
class SubsetDataset:
    """Keep a fixed, seeded fraction of a dataset (class-balanced by
    default), e.g. DearKD's training on part of ImageNet::

        train_dataloader = dict(dataset=dict(
            type='SubsetDataset', fraction=0.25, seed=0,
            dataset=dict(type='ImageNet', data_root=..., split='train',
                         pipeline=...)))

    The subset depends only on the wrapped dataset's labels, ``fraction``,
    ``seed`` and ``per_class``: every run, rank and resumed run sees the
    same images. The kept indices are logged at build (count) and
    available as ``indices``.

    Args:
        dataset (dict | BaseDataset): The dataset, or its config.
        fraction (float): The share of images to keep, in (0, 1].
        seed (int): Seed of the draw. Defaults to 0.
        per_class (bool): Keep the share of every class (see
            :func:`subset_indices`). Defaults to True.
        lazy_init (bool): Defer reading the annotations. Defaults to False.
    """

    def __init__(self,
                 dataset: Union[dict, BaseDataset],
                 fraction: float,
                 seed: int = 0,
                 per_class: bool = True,
                 lazy_init: bool = False):
        if isinstance(dataset, dict):
            dataset = DATASETS.build(copy.deepcopy(dataset))
        self.dataset = dataset
        self.fraction = float(fraction)
        self.seed = int(seed)
        self.per_class = per_class
        if not 0 < self.fraction <= 1:
            raise ValueError(f'SubsetDataset: fraction must be in (0, 1], '
                             f'got {fraction}.')
        self.indices: Optional[List[int]] = None
        if not lazy_init:
            self.full_init()

    @property
    def metainfo(self) -> dict:
        return copy.deepcopy(self.dataset.metainfo)

    def _labels(self) -> List[int]:
        if hasattr(self.dataset, 'get_gt_labels'):
            return [int(x) for x in self.dataset.get_gt_labels()]
        return [
            int(self.dataset.get_data_info(i)['gt_label'])
            for i in range(len(self.dataset))
        ]

    def full_init(self) -> None:
        if self.indices is not None:
            return
        if hasattr(self.dataset, 'full_init'):
            self.dataset.full_init()
        self.indices = subset_indices(self._labels(), self.fraction,
                                      self.seed, self.per_class)

    def get_data_info(self, idx: int) -> dict:
        self.full_init()
        return self.dataset.get_data_info(self.indices[idx])

    def get_gt_labels(self) -> np.ndarray:
        self.full_init()
        return np.asarray(self._labels())[self.indices]

    def __getitem__(self, idx: int) -> dict:
        self.full_init()
        return self.dataset[self.indices[idx]]

    def __len__(self) -> int:
        self.full_init()
        return len(self.indices)

    def __repr__(self) -> str:
        kept = 'lazy' if self.indices is None else len(self.indices)
        return (f'SubsetDataset(fraction={self.fraction}, seed={self.seed}, '
                f'per_class={self.per_class}, kept={kept} of '
                f'{len(self.dataset)})\n{self.dataset!r}')
