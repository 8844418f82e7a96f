# A small DeiT III for 32x32 digits, trained from scratch as the ViT teacher
# of the digits ViTKD runs: patch 8 (the student's 4x4 token grid), 6
# blocks, width 128. FixedDeiT3 = mmpretrain's DeiT3 with the correct
# pre-FFN norm (see cls_kd/models/backbones/deit3.py).
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='FixedDeiT3',
        arch=dict(
            embed_dims=128, num_layers=6, num_heads=4,
            feedforward_channels=256),
        img_size=32,
        patch_size=8,
        drop_path_rate=0.0),
    neck=None,
    head=dict(
        type='VisionTransformerClsHead',
        num_classes=10,
        in_channels=128,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)),
)
