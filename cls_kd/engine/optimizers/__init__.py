from .autocast_wrapper import AutocastOptimWrapper
from .merged_groups import (
                            MergedGroupsOptimWrapperConstructor,
                            merge_param_groups,
                            with_fused_default,
)
from .non_finite import (
                         NonFiniteGuardAmpOptimWrapper,
                         NonFiniteGuardMixin,
                         NonFiniteGuardOptimWrapper,
                         NonFiniteStepError,
                         grads_are_finite,
)
from .timm_optim import RMSpropTF  # noqa: F401

__all__ = [
    'AutocastOptimWrapper', 'MergedGroupsOptimWrapperConstructor',
    'merge_param_groups', 'NonFiniteGuardAmpOptimWrapper',
    'NonFiniteGuardMixin', 'NonFiniteGuardOptimWrapper', 'NonFiniteStepError',
    'grads_are_finite', 'with_fused_default'
]
