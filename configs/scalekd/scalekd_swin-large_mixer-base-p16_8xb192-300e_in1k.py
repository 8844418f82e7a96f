# ScaleKD: Swin-L (ImageNet-21k -> 1k, 224 px) -> Mixer-B/16, advanced recipe
# (300 epochs, AdamW lr 7e-4, wd 0.067, batch 1536 = 8 GPUs x 192; see the
# frame), as deep-optimization/ScaleKD's configs/distillers/
# advanced_training_strategy/swin-l_distill_mlp_b_img_s3_s4.py.
_base_ = [
    '../_base_/distill/scalekd_mixer-advanced_in1k.py',
    '../_base_/teachers/swin-large_in21k-pre_in1k.py',
]

model = dict(
    teacher={{_base_.teacher}},
    # Tokens (B, 196, 768) after block 10 and after block 12, before the
    # final norm (the published backbone's outputs 2 and 3).
    taps=dict(
        s_s3=dict(path='backbone.layers.9'),
        s_s4=dict(path='backbone.layers.11')),
    connectors=dict(
        tpp={{_base_.scalekd_tpp_swin}},
        cap3=dict(arch='mixer-b16-s3'), cap3_alt=dict(arch='mixer-b16-s3'),
        cap4=dict(arch='mixer-b16-s4'), cap4_alt=dict(arch='mixer-b16-s4')),
)
