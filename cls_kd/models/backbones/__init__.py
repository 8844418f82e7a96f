from .deit3 import FixedDeiT3, FixedDeiT3TransformerEncoderLayer
from .mhca import (
    MHCADistilledVisionTransformer,
    MHCAVisionTransformer,
    MultiheadConvAttention,
)
from .mobilenet_v1 import MobileNetV1

__all__ = [
    'FixedDeiT3', 'FixedDeiT3TransformerEncoderLayer',
    'MHCADistilledVisionTransformer', 'MHCAVisionTransformer', 'MobileNetV1',
    'MultiheadConvAttention'
]
