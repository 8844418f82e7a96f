from .autocast_wrapper import AutocastOptimWrapper
from .merged_groups import (
                            MergedGroupsOptimWrapperConstructor,
                            merge_param_groups,
)

__all__ = [
    'AutocastOptimWrapper', 'MergedGroupsOptimWrapperConstructor',
    'merge_param_groups'
]
