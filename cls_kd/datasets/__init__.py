"""Dataset wrappers, and the checks of a run's datasets before any work."""
from .checks import (
    DatasetCheckError,
    check_num_classes,
    check_synthesis_finished,
    dataset_chain,
    dataset_num_classes,
    image_folder,
    model_num_classes,
)
from .replay import (
    REPLAYABLE_TRANSFORMS,
    SeededAugmentDataset,
    SeededAugmentHook,
    check_sampler,
    find_seeded_dataset,
    pipeline_digest,
    run_facts,
    view_seed,
)
from .replay_batches import (
    SeededBatchAugments,
    batch_key,
    epoch_batches,
    mix_facts,
    mix_fingerprint,
    rank_indices,
    seed_batch_augments,
)
from .subset import SubsetDataset, subset_indices

__all__ = [
    'SubsetDataset', 'subset_indices', 'DatasetCheckError', 'dataset_chain',
    'image_folder', 'dataset_num_classes', 'model_num_classes',
    'check_num_classes', 'check_synthesis_finished', 'SeededAugmentDataset',
    'SeededAugmentHook', 'REPLAYABLE_TRANSFORMS', 'view_seed',
    'pipeline_digest', 'find_seeded_dataset', 'run_facts', 'batch_key',
    'SeededBatchAugments', 'seed_batch_augments', 'mix_fingerprint',
    'mix_facts', 'check_sampler', 'epoch_batches', 'rank_indices'
]
