# ViTKD on digits: DeiT III 6x128 -> ViT 4x32, blocks 0 and 1 mimicked, the
# final-norm tokens generated, as on ImageNet. alpha and beta are the
# paper's scaled by 196*384 / (16*128) ~ 37.6: the losses are sums over
# tokens and channels, and this keeps the weight per element of
# DeiT III-S -> DeiT-T (196 tokens, width 384) for 16 tokens of width 128.
_base_ = ['../_base_/distill/vitkd_deit3-6x128-p8_vit-4x32-p8_digits.py']

model = dict(
    losses=dict(
        loss_vitkd_mimic=dict(alpha=3e-5 * 37.6),
        loss_vitkd_gen=dict(beta=3e-6 * 37.6)))
