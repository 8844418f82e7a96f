"""Seeded, replayable augmentation: the same (seed, epoch, sample) gives
the same augmented view, bit for bit, in any process and run.

What stored teacher outputs rest on (``docs/stored_teacher_outputs.md``):
``tools/dump_teacher_outputs.py`` runs the teacher on the views of an
epoch, and a later run that trains on the same views reads them back.
"""
import copy
import hashlib
import multiprocessing
import re
from typing import List, Union

import numpy as np
from mmengine.dataset import BaseDataset
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from cls_kd.registry import DATASETS, HOOKS

from .replay_batches import SeededGenerators, mix_facts, seed_batch_augments

__all__ = [
    'SeededAugmentDataset', 'SeededAugmentHook', 'REPLAYABLE_TRANSFORMS',
    'view_seed', 'pipeline_digest', 'find_seeded_dataset', 'run_facts',
    'check_sampler'
]

#: Transforms whose every random draw comes from Python's ``random``,
#: NumPy's global generator or torch's default CPU generator, and which
#: keep no state between calls: seeding those replays them.
REPLAYABLE_TRANSFORMS = frozenset({
    'LoadImageFromFile', 'PackInputs', 'Resize', 'ResizeEdge', 'CenterCrop',
    'RandomCrop', 'RandomResizedCrop', 'RandomFlip', 'RandAugment',
    'AutoAugment', 'RandomErasing', 'ColorJitter', 'Normalize',
    'EfficientNetRandomCrop', 'EfficientNetCenterCrop', 'RandomGrayscale',
    'GaussianBlur', 'Lighting', 'ToNumpy', 'Transpose', 'ImageToTensor',
    'RandomApply'
})


def view_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one view: a hash of ``(seed, epoch, index)``, in
    [0, 2**32)."""
    key = f'{int(seed)}:{int(epoch)}:{int(index)}'.encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], 'little')


def pipeline_digest(pipeline) -> str:
    """A short digest of a pipeline's ``repr`` (object addresses removed),
    to tell whether two runs augment alike."""
    text = re.sub(r' at 0x[0-9a-f]+', '', repr(pipeline))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _pipeline_of(dataset):
    """The pipeline (mmengine ``Compose``) of a dataset or of the dataset a
    wrapper holds."""
    while dataset is not None:
        if getattr(dataset, 'pipeline', None) is not None:
            return dataset.pipeline
        dataset = getattr(dataset, 'dataset', None)
    return None


def _transform_names(pipeline) -> List[str]:
    return [type(t).__name__ for t in getattr(pipeline, 'transforms', [])]


@DATASETS.register_module()
class SeededAugmentDataset:
    """Draw the random numbers of a dataset's pipeline from a seed per
    (epoch, sample), so that a view can be rebuilt bit for bit::

        train_dataloader = dict(dataset=dict(
            type='SeededAugmentDataset', seed=0, dataset=<the dataset>))
        custom_hooks = [dict(type='SeededAugmentHook')]

    Around each pipeline call, Python's ``random``, NumPy's global generator
    and torch's default CPU generator are seeded with
    :func:`view_seed` ``(seed, epoch, index)`` and restored afterwards, so
    the rest of the program draws the same numbers as without the wrapper.
    The epoch lives in shared memory: :class:`SeededAugmentHook` sets it
    before each epoch and persistent dataloader workers see it. Each packed
    sample carries ``replay_index``, ``replay_epoch`` and ``replay_seed``
    in its metainfo.

    The seed is the wrapper's own, not ``randomness.seed``: students
    trained with other seeds still see the views a teacher was run on.

    Args:
        dataset (dict | BaseDataset): The dataset, or its config; its
            pipeline may hold only :data:`REPLAYABLE_TRANSFORMS`.
        seed (int): Seed of the views. Defaults to 0.
        lazy_init (bool): Defer reading the annotations. Defaults to False.

    Raises:
        ValueError: A transform of the pipeline is not known to be
            replayable (named, with the list of those that are).
    """

    def __init__(self, dataset: Union[dict, BaseDataset], seed: int = 0,
                 lazy_init: bool = False):
        if isinstance(dataset, dict):
            dataset = DATASETS.build(copy.deepcopy(dataset))
        self.dataset = dataset
        self.seed = int(seed)
        # Shared with dataloader workers (also persistent ones).
        # -1: not set yet (no SeededAugmentHook): refused by __getitem__.
        self._epoch = multiprocessing.Value('q', -1, lock=False)
        pipeline = _pipeline_of(dataset)
        unknown = [
            name for name in _transform_names(pipeline)
            if name not in REPLAYABLE_TRANSFORMS
        ]
        if unknown:
            raise ValueError(
                f'SeededAugmentDataset: transforms {unknown} are not known to '
                f'be replayable from a seed (they may keep state or draw from '
                f'a generator of their own). Replayable: '
                f'{sorted(REPLAYABLE_TRANSFORMS)}.')
        if not lazy_init:
            self.full_init()

    @property
    def epoch(self) -> int:
        return int(self._epoch.value)

    def set_epoch(self, epoch: int) -> None:
        """Views from now on are those of ``epoch`` (0-based)."""
        self._epoch.value = int(epoch)

    @property
    def pipeline_digest(self) -> str:
        """See :func:`pipeline_digest`."""
        return pipeline_digest(_pipeline_of(self.dataset))

    @property
    def metainfo(self) -> dict:
        return copy.deepcopy(self.dataset.metainfo)

    def full_init(self) -> None:
        if hasattr(self.dataset, 'full_init'):
            self.dataset.full_init()

    def get_data_info(self, idx: int) -> dict:
        return self.dataset.get_data_info(idx)

    def get_gt_labels(self) -> np.ndarray:
        return self.dataset.get_gt_labels()

    def __len__(self) -> int:
        return len(self.dataset)

    def view(self, idx: int, epoch: int) -> dict:
        """Sample ``idx`` as augmented in ``epoch``, whatever the current
        epoch."""
        with SeededGenerators(view_seed(self.seed, epoch, idx)):
            data = self.dataset[idx]
        sample = data.get('data_samples') if isinstance(data, dict) else None
        if sample is not None and hasattr(sample, 'set_metainfo'):
            sample.set_metainfo(
                dict(replay_index=idx, replay_epoch=epoch,
                     replay_seed=self.seed))
        return data

    def __getitem__(self, idx: int) -> dict:
        if self.epoch < 0:
            raise RuntimeError(
                'SeededAugmentDataset: no epoch set, so every epoch would '
                'see the views of one: add custom_hooks=[dict(type='
                "'SeededAugmentHook')] (or call set_epoch before each epoch).")
        return self.view(idx, self.epoch)

    def __repr__(self) -> str:
        return (f'SeededAugmentDataset(seed={self.seed}, '
                f'epoch={self.epoch})\n{self.dataset!r}')


def find_seeded_dataset(dataset):
    """The :class:`SeededAugmentDataset` in a chain of dataset wrappers, or
    None."""
    while dataset is not None:
        if isinstance(dataset, SeededAugmentDataset):
            return dataset
        dataset = getattr(dataset, 'dataset', None)
    return None


@HOOKS.register_module()
class SeededAugmentHook(Hook):
    """Tells the training set's :class:`SeededAugmentDataset` the epoch
    before each epoch, seeds the model's batch augments per batch
    (:func:`seed_batch_augments`), and hands the run's facts (seed,
    pipeline, batch and world size) to a distiller that replays stored
    teacher outputs, which refuses outputs stored for another run before
    the first step."""

    priority = 'VERY_HIGH'

    def before_train(self, runner) -> None:
        from mmengine.runner import EpochBasedTrainLoop
        if not isinstance(runner.train_loop, EpochBasedTrainLoop):
            raise ValueError(
                f'SeededAugmentHook: views are seeded per epoch, but the '
                f'training loop is {type(runner.train_loop).__name__}, whose '
                f'epochs do not advance: use an epoch-based train_cfg.')
        dataset = find_seeded_dataset(runner.train_dataloader.dataset)
        if dataset is None:
            raise ValueError(
                'SeededAugmentHook: the training set is not wrapped in '
                "SeededAugmentDataset: set train_dataloader.dataset=dict("
                "type='SeededAugmentDataset', dataset=<the dataset>).")
        check_sampler(runner.train_dataloader.sampler)
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        preprocessor = getattr(model, 'data_preprocessor', None)
        seed_batch_augments(preprocessor)
        check = getattr(model, 'check_stored_outputs', None)
        if check is not None:
            facts = run_facts(runner.train_dataloader)
            facts['mix'] = mix_facts(preprocessor, runner.train_dataloader)
            check(facts, range(runner.epoch, runner.max_epochs))

    def before_train_epoch(self, runner) -> None:
        find_seeded_dataset(runner.train_dataloader.dataset).set_epoch(
            runner.epoch)


def check_sampler(sampler) -> None:
    """Refuse a sampler that gives a sample several times an epoch on
    purpose (repeated augmentation, mmpretrain's ``RepeatAugSampler``): a
    seeded view is one per (epoch, sample), so the repeats would be the
    same image instead of differently augmented ones."""
    repeats = getattr(sampler, 'num_repeats', 1)
    if repeats != 1:
        raise ValueError(
            f'SeededAugmentDataset: the training sampler '
            f'{type(sampler).__name__} gives each sample {repeats} times an '
            f'epoch, to be augmented differently (repeated augmentation); '
            f'seeded views are one per (epoch, sample), so the repeats would '
            f'be identical. Use DefaultSampler (a change of recipe) or train '
            f'without SeededAugmentDataset.')


def run_facts(dataloader) -> dict:
    """What a store of teacher outputs must agree with: the view seed, the
    pipeline digest, the dataset length, the batch size per process and
    the world size."""
    from mmengine.dist import get_world_size
    dataset = find_seeded_dataset(dataloader.dataset)
    return dict(
        seed=dataset.seed,
        pipeline=dataset.pipeline_digest,
        length=len(dataset),
        batch_size=int(dataloader.batch_size),
        world_size=int(get_world_size()))
