from .deit_distill_head import DeiTDistillHead
from .dino_linear_head import DINOLinearClsHead

__all__ = ['DINOLinearClsHead', 'DeiTDistillHead']
