from .deit3 import FixedDeiT3, FixedDeiT3TransformerEncoderLayer
from .dino_vit import DINOVisionTransformer
from .mhca import (
    MHCADistilledVisionTransformer,
    MHCAVisionTransformer,
    MultiheadConvAttention,
)
from .mobilenet_v1 import MobileNetV1
from .vit_init import (
    TimmInitDistilledVisionTransformer,
    TimmInitMixin,
    timm_vit_init_,
)

__all__ = [
    'DINOVisionTransformer', 'FixedDeiT3', 'FixedDeiT3TransformerEncoderLayer',
    'MHCADistilledVisionTransformer', 'MHCAVisionTransformer', 'MobileNetV1',
    'MultiheadConvAttention', 'TimmInitDistilledVisionTransformer',
    'TimmInitMixin', 'timm_vit_init_'
]
