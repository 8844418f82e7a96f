"""Replayable batch augments: Mixup, CutMix and the like drawing their
random numbers from a key of the batch (its view seed, epoch and members in
order), so that a batch of the same seeded views is mixed the same way in
any run; what stored teacher outputs of mixed batches rest on
(``docs/stored_teacher_outputs.md``)."""
import copy
import hashlib
import math
import random
import re
from typing import List

import numpy as np
import torch
from mmengine.dataset import DefaultSampler

__all__ = [
    'SeededGenerators', 'batch_key', 'SeededBatchAugments',
    'seed_batch_augments', 'mix_fingerprint', 'mix_facts', 'rank_indices',
    'epoch_batches'
]


class SeededGenerators:
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


def batch_key(seed: int, epoch: int, indices) -> int:
    """The key of one batch of views: a hash of the view seed, the epoch and
    the batch's sample indices in order, in [0, 2**32). Batch augments
    (Mixup/CutMix) of the batch draw from it."""
    key = f'{int(seed)}:{int(epoch)}:' + ','.join(str(int(i))
                                                  for i in indices)
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4],
                          'little')


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
        with SeededGenerators(self.key):
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
    (``gt_score``): ``sum_c score_c * (c + 1)``. It moves with lambda (for
    CutMix: the box's area) and the partner's class, not with where the box
    is or which sample of the same class the partner is: the batch key
    fixes those. One transfer from the device for the batch."""
    scores = torch.stack([s.gt_score.detach() for s in data_samples])
    weights = torch.arange(1, scores.shape[1] + 1, device=scores.device,
                           dtype=torch.float32)
    return (scores.float() * weights).sum(1).cpu().numpy().astype(np.float32)


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


def rank_indices(sampler, rank: int, world_size: int, epoch: int) -> list:
    """The sample indices that process ``rank`` of ``world_size`` training
    processes draws from ``sampler`` in ``epoch``, whatever the process
    asking: mmengine's ``DefaultSampler`` is recomputed for that rank;
    another sampler only as it is, in one process for one.

    Raises:
        ValueError: Another sampler where its ranks would have to be
            rebuilt.
    """
    if isinstance(sampler, DefaultSampler):
        sampler = copy.copy(sampler)
        sampler.rank, sampler.world_size = rank, world_size
        n = len(sampler.dataset)
        if sampler.round_up:
            sampler.num_samples = math.ceil(n / world_size)
            sampler.total_size = sampler.num_samples * world_size
        else:
            sampler.num_samples = math.ceil((n - rank) / world_size)
            sampler.total_size = n
    elif world_size > 1 or getattr(sampler, 'world_size', 1) > 1:
        raise ValueError(
            f'the batches of each training process are rebuilt for '
            f'mmengine\'s DefaultSampler only, the config has '
            f'{type(sampler).__name__} ({world_size} training process(es), '
            f'{getattr(sampler, "world_size", 1)} dumping).')
    if hasattr(sampler, 'set_epoch'):
        sampler.set_epoch(epoch)
    return list(iter(sampler))


def epoch_batches(sampler, batch_size: int, world_size: int, epoch: int,
                  drop_last: bool = False) -> List[List[int]]:
    """Every batch of ``epoch`` over ``world_size`` training processes:
    lists of sample indices, rank by rank, in order (a rank's last, partial
    batch left out with ``drop_last``)."""
    batches = []
    for rank in range(world_size):
        indices = rank_indices(sampler, rank, world_size, epoch)
        for start in range(0, len(indices), batch_size):
            batch = indices[start:start + batch_size]
            if len(batch) == batch_size or not drop_last:
                batches.append(batch)
    return batches
