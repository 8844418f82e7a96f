# The paper's "MHCA alone" row: DeiT-Tiny whose first 4 blocks use MHCA,
# trained on the labels only (no teacher, no distillation token, no hidden
# loss), at the DearKD-Ti recipe = DeiT's (dearkd_regnety-160_deit-tiny_
# 4xb256_in1k.py: 4 GPUs x 256, AdamW, 300 epochs, drop-path 0.1,
# Mixup/CutMix, RandAugment, repeated augmentation). Export-free: the
# checkpoint is a plain mmpretrain classifier.
_base_ = ['./dearkd_regnety-160_deit-tiny_4xb256_in1k.py']

model = dict(
    _delete_=True,
    type='ImageClassifier',
    backbone=dict(
        type='MHCAVisionTransformer',
        arch='deit-tiny',
        img_size=224,
        patch_size=16,
        mhca_layers=4,
        init_style='timm',
        drop_path_rate=0.1),
    neck=None,
    head=dict(
        type='VisionTransformerClsHead',
        num_classes=1000,
        in_channels=192,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        # timm's ViT under DeiT: trunc-normal 0.02 (mmpretrain's: zeros).
        init_cfg=dict(type='TruncNormal', layer='Linear', std=.02)),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0)
    ]),
)
