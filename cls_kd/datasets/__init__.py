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
from .subset import SubsetDataset, subset_indices

__all__ = [
    'SubsetDataset', 'subset_indices', 'DatasetCheckError', 'dataset_chain',
    'image_folder', 'dataset_num_classes', 'model_num_classes',
    'check_num_classes', 'check_synthesis_finished'
]
