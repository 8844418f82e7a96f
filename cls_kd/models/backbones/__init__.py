from .deit3 import FixedDeiT3, FixedDeiT3TransformerEncoderLayer

__all__ = ['FixedDeiT3', 'FixedDeiT3TransformerEncoderLayer']
