"""Seeded, replayable augmentation: the same (seed, epoch, sample) gives
the same augmented view, bit for bit, in any process and run.

What stored teacher outputs rest on (``docs/stored_teacher_outputs.md``):
``tools/dump_teacher_outputs.py`` runs the teacher on the views of an
epoch, and a later run that trains on the same views reads them back.
"""
import copy
import hashlib
import multiprocessing
import random
import re
from typing import List, Union

import numpy as np
import torch
from mmengine.dataset import BaseDataset
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from cls_kd.registry import DATASETS, HOOKS

__all__ = [
    'SeededAugmentDataset', 'SeededAugmentHook', 'REPLAYABLE_TRANSFORMS',
    'view_seed', 'pipeline_digest', 'find_seeded_dataset', 'run_facts',
    'batch_key', 'SeededBatchAugments', 'seed_batch_augments',
    'mix_fingerprint', 'mix_facts'
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


def batch_key(seed: int, epoch: int, indices) -> int:
    """The key of one batch of views: a hash of the view seed, the epoch and
    the batch's sample indices in order, in [0, 2**32). Batch augments
    (Mixup/CutMix) of the batch draw from it."""
    key = f'{int(seed)}:{int(epoch)}:' + ','.join(str(int(i))
                                                  for i in indices)
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4],
                          'little')


class _Seeded:
    """Seed Python's ``random``, NumPy's global generator and torch's CPU
    generator with ``seed`` inside the block, restore them after."""

    def __init__(self, seed: int):
        self.seed = seed

    def __enter__(self):
        self.states = (random.getstate(), np.random.get_state(),
                       torch.get_rng_state())
        random.seed(self.seed)
        np.random.seed(self.seed)
        torch.default_generator.manual_seed(self.seed)

    def __exit__(self, *exc):
        random.setstate(self.states[0])
        np.random.set_state(self.states[1])
        torch.set_rng_state(self.states[2])
        return False


class SeededBatchAugments:
    """A data preprocessor's batch augments (mmpretrain's
    ``RandomBatchAugment``: Mixup, CutMix, ResizeMix, ...) drawing their
    random numbers (which augment, lambda, the permutation, the box) from
    :func:`batch_key` of the batch, so that a batch of the same seeded
    views in the same order is mixed the same way in any run.

    Installed by :func:`seed_batch_augments`; a batch without replay keys
    (not from :class:`SeededAugmentDataset`) is mixed unseeded.

    Args:
        augments (callable): The batch augments to wrap.
    """

    def __init__(self, augments):
        self.augments = augments
        self.key = None  # set from the batch by the preprocessor's hook

    def see_batch(self, module, args, kwargs) -> None:
        """Forward pre-hook of the data preprocessor: the key of the batch
        it is about to process (None without replay keys)."""
        data = args[0] if args else kwargs.get('data')
        samples = data.get('data_samples') if isinstance(data, dict) else None
        meta = [getattr(s, 'metainfo', {}) for s in samples or []]
        if meta and all('replay_index' in m for m in meta):
            self.key = batch_key(meta[0]['replay_seed'],
                                 meta[0]['replay_epoch'],
                                 [m['replay_index'] for m in meta])
        else:
            self.key = None

    def __call__(self, inputs, scores):
        if self.key is None:
            return self.augments(inputs, scores)
        with _Seeded(self.key):
            return self.augments(inputs, scores)

    def __repr__(self) -> str:
        return f'SeededBatchAugments({self.augments!r})'


def seed_batch_augments(data_preprocessor) -> bool:
    """Make ``data_preprocessor.batch_augments`` draw from each batch's
    :func:`batch_key` (idempotent); False when it has none."""
    augments = getattr(data_preprocessor, 'batch_augments', None)
    if augments is None:
        return False
    if not isinstance(augments, SeededBatchAugments):
        augments = SeededBatchAugments(augments)
        data_preprocessor.batch_augments = augments
        data_preprocessor.register_forward_pre_hook(augments.see_batch,
                                                    with_kwargs=True)
    return True


def mix_fingerprint(data_samples) -> np.ndarray:
    """One float32 per sample summarising its mixed soft label
    (``gt_score``): ``sum_c score_c * (c + 1)``. Equal fingerprints mean
    (up to rounding) the same lambda, partner and box."""
    scores = torch.stack([s.gt_score.detach().float().cpu()
                          for s in data_samples])  # B, K
    weights = torch.arange(1, scores.shape[1] + 1, dtype=torch.float32)
    return (scores * weights).sum(1).numpy().astype(np.float32)


def mix_facts(data_preprocessor, dataloader) -> dict:
    """What mixed stored outputs must agree with besides :func:`run_facts`:
    the batch augments (digest of their ``repr``) and the sampler's seed,
    which fix each sample's batch; None without batch augments."""
    augments = getattr(data_preprocessor, 'batch_augments', None)
    if augments is None:
        return None
    augments = getattr(augments, 'augments', augments)
    text = re.sub(r' at 0x[0-9a-f]+', '', repr(augments))
    text += repr(getattr(augments, 'probs', None))
    for aug in getattr(augments, 'augments', []):  # their settings
        text += repr(sorted(getattr(aug, '__dict__', {}).items()))
    sampler = getattr(dataloader, 'sampler', None)
    return dict(augments=hashlib.sha256(text.encode()).hexdigest()[:16],
                sampler_seed=getattr(sampler, 'seed', None),
                sampler=type(sampler).__name__,
                shuffle=getattr(sampler, 'shuffle', None))


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
        self._epoch = multiprocessing.Value('q', 0, lock=False)
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
        with _Seeded(view_seed(self.seed, epoch, idx)):
            data = self.dataset[idx]
        sample = data.get('data_samples') if isinstance(data, dict) else None
        if sample is not None and hasattr(sample, 'set_metainfo'):
            sample.set_metainfo(
                dict(replay_index=idx, replay_epoch=epoch,
                     replay_seed=self.seed))
        return data

    def __getitem__(self, idx: int) -> dict:
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

    def __init__(self) -> None:
        super().__init__()

    def before_train(self, runner) -> None:
        dataset = find_seeded_dataset(runner.train_dataloader.dataset)
        if dataset is None:
            raise ValueError(
                'SeededAugmentHook: the training set is not wrapped in '
                "SeededAugmentDataset: set train_dataloader.dataset=dict("
                "type='SeededAugmentDataset', dataset=<the dataset>).")
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
