# ScaleKD: Swin-L (ImageNet-21k -> 1k, 224 px) -> Mixer-S/16, advanced recipe
# (300 epochs, AdamW lr 7e-4, wd 0.067, batch 768 = 8 GPUs x 96, EMA 1e-4;
# see the frame), as deep-optimization/ScaleKD's configs/distillers/
# advanced_training_strategy/swin-l_distill_mlp_s_img_s3_s4.py and its
# student config configs/mlp_mixer/mlp-mixer-small-p16_64xb64_in1k.py (per
# GPU 24 on the README's 32 GPUs; its comment counts 8 nodes, 1536).
_base_ = [
    '../_base_/distill/scalekd_mixer-advanced_in1k.py',
    '../_base_/teachers/swin-large_in21k-pre_in1k.py',
]

model = dict(
    # Mixer-S/16 without drop-path (_base_/models/mlp_mixer_small_patch16.py
    # of the published code).
    student=dict(
        backbone=dict(arch='s', drop_path_rate=0.0),
        head=dict(in_channels=512)),
    teacher={{_base_.teacher}},
    # Tokens (B, 196, 512) after block 6 and after block 8, before the final
    # norm (the published backbone's outputs 2 and 3).
    taps=dict(
        s_s3=dict(path='backbone.layers.5'),
        s_s4=dict(path='backbone.layers.7')),
    connectors=dict(
        tpp={{_base_.scalekd_tpp_swin}},
        cap3=dict(arch='mixer-s16-s3'), cap3_alt=dict(arch='mixer-s16-s3'),
        cap4=dict(arch='mixer-s16-s4'), cap4_alt=dict(arch='mixer-s16-s4')),
)

train_dataloader = dict(batch_size=96)
# The published Mixer-S/16 validates the raw weights, not the EMA copy.
custom_hooks = [
    dict(type='EMAHook', momentum=1e-4, priority='ABOVE_NORMAL',
         evaluate_on_ema=False)
]
