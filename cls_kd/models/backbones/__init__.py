from .deit3 import FixedDeiT3, FixedDeiT3TransformerEncoderLayer
from .mobilenet_v1 import MobileNetV1

__all__ = ['FixedDeiT3', 'FixedDeiT3TransformerEncoderLayer', 'MobileNetV1']
