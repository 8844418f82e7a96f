from .checkpoint import (
                         extract_state_dict,
                         load_model_weights,
                         patch_mmengine_torch_load,
)
from .compile import cast_numpy_scalars
from .launch import apply_launch_args

__all__ = [
    'extract_state_dict', 'load_model_weights', 'patch_mmengine_torch_load',
    'cast_numpy_scalars', 'apply_launch_args'
]
