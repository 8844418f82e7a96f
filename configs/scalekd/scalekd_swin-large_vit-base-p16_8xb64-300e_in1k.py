# ScaleKD: Swin-L (ImageNet-21k -> 1k, 224 px) -> ViT-B/16 (no class token,
# normalised tokens average-pooled), advanced recipe (300 epochs, AdamW
# lr 1e-3, batch 512 = 8 GPUs x 64, EMA 1e-4; see the frame), as
# deep-optimization/ScaleKD's configs/distillers/advanced_training_strategy/
# swin-l_distill_deit-b_img_s3_s4.py and its student config
# configs/deit/deit-base_pt-4xb256_in1k.py, whose data base
# (_base_/datasets/imagenet_bs32_swin_224.py) evaluates at 224 -> 224.
_base_ = [
    '../_base_/distill/scalekd_vit-advanced_in1k.py',
    '../_base_/teachers/swin-large_in21k-pre_in1k.py',
]

model = dict(
    teacher={{_base_.teacher}},
    # Tokens (B, 196, 768) after block 9 and after the last block's final
    # norm (the published backbone's outputs 2 and 3).
    taps=dict(
        s_s3=dict(path='backbone.layers.8'),
        s_s4=dict(path='backbone.ln1')),
    connectors=dict(
        tpp={{_base_.scalekd_tpp_swin}},
        cap3=dict(arch='vit-b16-s3'), cap3_alt=dict(arch='vit-b16-s3'),
        cap4=dict(arch='vit-b16-s4'), cap4_alt=dict(arch='vit-b16-s4')),
)

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=224, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
