from .attn_projector import AttnDistillProjector
from .layout import MapPool, MapResize, MapToTokens, TokensToMap
from .projectors import ConvConnector, LinearConnector
from .scalekd import CrossAttentionProjector
from .vitkd import TokenGridResize, ViTKDGenerator, random_masking
from .widths import MeasuredWidths

__all__ = [
    'AttnDistillProjector', 'CrossAttentionProjector',
    'LinearConnector', 'ConvConnector', 'MapPool', 'MapResize', 'MapToTokens',
    'MeasuredWidths', 'TokenGridResize', 'TokensToMap', 'ViTKDGenerator',
    'random_masking'
]
