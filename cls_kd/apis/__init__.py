"""The start-up every tool shares: reading a config (:func:`load_config`),
preparing a training run (:func:`prepare_training`), the checks before a
run, and building a config's models to inspect them.

Above ``models``, ``datasets``, ``engine`` and ``utils``; imported by the
tools and the tests only, never by the package below it.
"""
from .config import config_arg, config_file, load_config
from .feature_maps import (
    AttentionMap,
    attention_map,
    feature_map,
    feature_positions,
    principal_axis,
)
from .inspection import (
    LossInputs,
    build_config_models,
    config_input_size,
    forward_model,
    last_attention_modules,
    load_student_weights,
    loss_inputs,
    loss_term,
)
from .launch import (
    apply_launch_args,
    build_runner,
    close_process_group,
    init_process_group,
)
from .resume import checkpoint_problem, find_resume_checkpoint, resolve_resume
from .run_checks import check_data_roots, fit_schedulers_to_max_epochs
from .training import (
    OptionError,
    apply_training_args,
    prepare_training,
    scale_base_lr_too,
)

__all__ = [
    'config_arg', 'config_file', 'load_config', 'AttentionMap',
    'attention_map', 'feature_map', 'feature_positions', 'principal_axis',
    'LossInputs', 'build_config_models', 'config_input_size',
    'forward_model', 'last_attention_modules', 'load_student_weights',
    'loss_inputs', 'loss_term', 'apply_launch_args', 'close_process_group',
    'init_process_group', 'build_runner',
    'checkpoint_problem', 'find_resume_checkpoint', 'resolve_resume',
    'check_data_roots', 'fit_schedulers_to_max_epochs', 'OptionError',
    'apply_training_args', 'prepare_training', 'scale_base_lr_too'
]
