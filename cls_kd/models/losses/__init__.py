"""Distillation losses: the logit family and feature losses."""
from .deit import DeiTDistillLoss, deit_hard_loss, deit_soft_loss
from .dkd import DKDLoss, dkd_loss
from .kd import KDLoss, kd_loss
from .nkd import NKDLoss, nkd_loss
from .vitkd import (
    ViTKDGenerationLoss,
    ViTKDMimicLoss,
    vitkd_generation_loss,
    vitkd_mimic_loss,
)

__all__ = [
    'DKDLoss',
    'DeiTDistillLoss',
    'KDLoss',
    'NKDLoss',
    'ViTKDGenerationLoss',
    'ViTKDMimicLoss',
    'deit_hard_loss',
    'deit_soft_loss',
    'dkd_loss',
    'kd_loss',
    'nkd_loss',
    'vitkd_generation_loss',
    'vitkd_mimic_loss'
]
