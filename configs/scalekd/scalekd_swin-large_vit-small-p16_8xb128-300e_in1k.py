# ScaleKD: Swin-L (ImageNet-21k -> 1k, 224 px) -> ViT-S/16 (DeiT-S widths, no
# class token, normalised tokens average-pooled), advanced recipe (300
# epochs, AdamW lr 1e-3, batch 1024 = 8 GPUs x 128, EMA 1e-4; see the
# frame), as deep-optimization/ScaleKD's configs/distillers/
# advanced_training_strategy/swin-l_distill_deit-s_img_s3_s4.py and its
# student config configs/deit/deit-small_pt-4xb256_in1k.py.
_base_ = [
    '../_base_/distill/scalekd_vit-advanced_in1k.py',
    '../_base_/teachers/swin-large_in21k-pre_in1k.py',
]

model = dict(
    student=dict(
        backbone=dict(arch='deit-small'), head=dict(in_channels=384)),
    teacher={{_base_.teacher}},
    # Tokens (B, 196, 384) after block 9 and after the last block's final
    # norm (the published backbone's outputs 2 and 3).
    taps=dict(
        s_s3=dict(path='backbone.layers.8'),
        s_s4=dict(path='backbone.ln1')),
    connectors=dict(
        tpp={{_base_.scalekd_tpp_swin}},
        cap3=dict(arch='vit-s16-s3'), cap3_alt=dict(arch='vit-s16-s3'),
        cap4=dict(arch='vit-s16-s4'), cap4_alt=dict(arch='vit-s16-s4')),
)

train_dataloader = dict(batch_size=128)
