"""Data-free image synthesis from a frozen teacher (DeepInversion, ADI,
DearKD's intra-divergence) and the folder it writes."""
from .losses import (
    BNStatsHook,
    adaptive_loss,
    bn_feature_loss,
    intra_divergence_loss,
    l2_prior,
    tv_l2,
)
from .output import (
    SettingsMismatchError,
    SynthesisOutput,
    check_output_folder,
    class_folder_names,
    find_synthesis,
    finish_command,
    label_counts,
    rank_batches,
)
from .settings import SynthesisSettingError, check_synthesis_settings
from .synthesizer import (
    DEFAULT_WEIGHTS,
    BatchResult,
    DeepInversionSynthesizer,
    balanced_labels,
    batch_generator,
    phase_lr,
)

__all__ = [
    'tv_l2', 'l2_prior', 'BNStatsHook', 'bn_feature_loss', 'adaptive_loss',
    'intra_divergence_loss', 'SettingsMismatchError', 'SynthesisOutput',
    'check_output_folder', 'find_synthesis', 'finish_command',
    'class_folder_names', 'label_counts', 'rank_batches', 'DEFAULT_WEIGHTS',
    'BatchResult', 'DeepInversionSynthesizer', 'balanced_labels',
    'batch_generator', 'phase_lr', 'SynthesisSettingError',
    'check_synthesis_settings'
]
