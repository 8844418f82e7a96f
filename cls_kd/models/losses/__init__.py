"""Distillation losses: the logit family and feature losses."""
from .attn_distill import (
    AttnDistillAlignLoss,
    AttnDistillAttentionLoss,
    attn_distill_align_loss,
    attn_distill_attention_loss,
)
from .cnn_feature import (
    AttentionTransferLoss,
    ChannelWiseDivergenceLoss,
    HintLoss,
    attention_map,
    attention_transfer_loss,
    channel_wise_divergence_loss,
)
from .deit import DeiTDistillLoss, deit_hard_loss, deit_soft_loss
from .dist import DISTLoss, dist_loss
from .dkd import DKDLoss, dkd_loss
from .feature import (
    FeatureCosineLoss,
    FeatureL1Loss,
    FeatureMSELoss,
    feature_cosine_loss,
    feature_l1_loss,
    feature_mse_loss,
)
from .kd import KDLoss, kd_loss
from .nkd import NKDLoss, nkd_loss
from .scalekd import DualViewMimicLoss, dual_view_mimic_loss, remove_direct
from .vitkd import (
    ViTKDGenerationLoss,
    ViTKDMimicLoss,
    vitkd_generation_loss,
    vitkd_mimic_loss,
)

__all__ = [
    'AttentionTransferLoss',
    'AttnDistillAlignLoss',
    'AttnDistillAttentionLoss',
    'ChannelWiseDivergenceLoss',
    'DISTLoss',
    'DKDLoss',
    'DeiTDistillLoss',
    'DualViewMimicLoss',
    'FeatureCosineLoss',
    'FeatureL1Loss',
    'FeatureMSELoss',
    'HintLoss',
    'KDLoss',
    'NKDLoss',
    'ViTKDGenerationLoss',
    'ViTKDMimicLoss',
    'attention_map',
    'attention_transfer_loss',
    'attn_distill_align_loss',
    'attn_distill_attention_loss',
    'channel_wise_divergence_loss',
    'deit_hard_loss',
    'deit_soft_loss',
    'dist_loss',
    'dkd_loss',
    'dual_view_mimic_loss',
    'feature_cosine_loss',
    'feature_l1_loss',
    'feature_mse_loss',
    'kd_loss',
    'nkd_loss',
    'remove_direct',
    'vitkd_generation_loss',
    'vitkd_mimic_loss'
]
