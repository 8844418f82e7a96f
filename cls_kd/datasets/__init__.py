"""Dataset wrappers."""
from .subset import SubsetDataset, subset_indices

__all__ = ['SubsetDataset', 'subset_indices']
