from .attn_projector import AttnDistillProjector
from .layout import MapPool, MapResize, MapToTokens, TokensToMap
from .projectors import ConvConnector, LinearConnector
from .scalekd import CrossAttentionProjector
from .teacher_part import TeacherAccess, TeacherPart
from .teacher_runners import (
    SequentialRunner,
    SwinStageRunner,
    TeacherRunner,
    ViTBlocksRunner,
)
from .vitkd import TokenGridResize, ViTKDGenerator, random_masking

__all__ = [
    'AttnDistillProjector', 'CrossAttentionProjector',
    'LinearConnector', 'ConvConnector', 'MapPool', 'MapResize', 'MapToTokens',
    'SequentialRunner', 'SwinStageRunner', 'TeacherAccess', 'TeacherPart',
    'TeacherRunner', 'TokenGridResize', 'TokensToMap', 'ViTBlocksRunner',
    'ViTKDGenerator', 'random_masking'
]
