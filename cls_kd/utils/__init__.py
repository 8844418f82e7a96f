from .checkpoint import (
                         extract_state_dict,
                         load_model_weights,
                         patch_mmengine_torch_load,
)
from .compile import cast_numpy_scalars

__all__ = [
    'extract_state_dict', 'load_model_weights', 'patch_mmengine_torch_load',
    'cast_numpy_scalars'
]
