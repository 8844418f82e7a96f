from .amp import (
                  AmpChoice,
                  AmpUnavailableError,
                  apply_amp,
                  choose_amp,
                  cpu_bf16_support,
)
from .checkpoint import (
                         CheckpointError,
                         extract_state_dict,
                         load_model_weights,
                         load_plain_student_hook,
                         patch_mmengine_torch_load,
)
from .compile import cast_numpy_scalars, compile_model, compile_options
from .config_paths import (
                           installed_path,
                           patch_mmengine_package_configs,
                           resolve_config_path,
                           resolve_teacher_paths,
                           teacher_specs,
)

__all__ = [
    'AmpChoice', 'AmpUnavailableError', 'apply_amp', 'choose_amp',
    'cpu_bf16_support',
    'extract_state_dict', 'load_model_weights', 'patch_mmengine_torch_load',
    'CheckpointError', 'load_plain_student_hook', 'installed_path',
    'patch_mmengine_package_configs', 'resolve_config_path',
    'resolve_teacher_paths', 'teacher_specs', 'cast_numpy_scalars',
    'compile_model', 'compile_options'
]
