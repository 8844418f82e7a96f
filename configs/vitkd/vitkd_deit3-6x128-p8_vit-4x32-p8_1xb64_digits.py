# ViTKD on digits: DeiT III 6x128 -> ViT 4x32, blocks 0 and 1 mimicked, the
# final-norm tokens generated, as on ImageNet. alpha and beta are the
# paper's scaled by 196*384 / (16*128) ~ 37.6: the losses are sums over
# tokens and channels, and this keeps the weight per element of
# DeiT III-S -> DeiT-T (196 tokens, width 384) for 16 tokens of width 128.
_base_ = [
    '../_base_/distill/deit3-6x128-p8_vit-4x32-p8_digits.py',
    '../_base_/distill/vitkd_deit.py',
]

model = dict(
    taps={{_base_.vitkd_taps}},
    connectors=dict(
        mimic0=dict(type='LinearConnector', in_channels=32, out_channels=128),
        mimic1=dict(type='LinearConnector', in_channels=32, out_channels=128),
        gen=dict(type='ViTKDGenerator', in_channels=32, out_channels=128,
                 mask_ratio=0.5)),
    losses=dict(
        loss_vitkd_mimic=dict(
            type='ViTKDMimicLoss',
            alpha=3e-5 * 37.6,
            inputs=dict(
                preds=['mimic0(s_block0)', 'mimic1(s_block1)'],
                targets=['t_block0', 't_block1'])),
        loss_vitkd_gen=dict(
            type='ViTKDGenerationLoss',
            beta=3e-6 * 37.6,
            mask_ratio=0.5,
            inputs=dict(
                preds='gen(s_last).preds',
                targets='t_last',
                mask='gen(s_last).mask'))),
)
