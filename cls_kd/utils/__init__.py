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
                           config_arg,
                           config_file,
                           installed_path,
                           patch_mmengine_package_configs,
                           resolve_config_path,
                           resolve_teacher_paths,
)
from .launch import apply_launch_args
from .resume import (
                     checkpoint_problem,
                     find_resume_checkpoint,
                     resolve_resume,
)
from .run_checks import check_data_roots, fit_schedulers_to_max_epochs

__all__ = [
    'AmpChoice', 'AmpUnavailableError', 'apply_amp', 'choose_amp',
    'cpu_bf16_support',
    'extract_state_dict', 'load_model_weights', 'patch_mmengine_torch_load',
    'CheckpointError', 'load_plain_student_hook', 'config_arg',
    'config_file', 'installed_path',
    'patch_mmengine_package_configs', 'resolve_config_path',
    'resolve_teacher_paths', 'cast_numpy_scalars', 'compile_model',
    'compile_options',
    'apply_launch_args',
    'checkpoint_problem', 'find_resume_checkpoint', 'resolve_resume',
    'check_data_roots', 'fit_schedulers_to_max_epochs'
]
