"""Logit distillation losses."""
from .deit import DeiTDistillLoss, deit_hard_loss, deit_soft_loss
from .dkd import DKDLoss, dkd_loss
from .kd import KDLoss, kd_loss
from .nkd import NKDLoss, nkd_loss

__all__ = [
    'DKDLoss',
    'DeiTDistillLoss',
    'KDLoss',
    'NKDLoss',
    'deit_hard_loss',
    'deit_soft_loss',
    'dkd_loss',
    'kd_loss',
    'nkd_loss'
]
