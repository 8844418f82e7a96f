# A tiny ViT for 32x32 digits: patch 8 (4x4 = 16 tokens), 4 blocks, width 64.
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='VisionTransformer',
        arch=dict(
            embed_dims=64, num_layers=4, num_heads=4,
            feedforward_channels=128),
        img_size=32,
        patch_size=8,
        drop_path_rate=0.0),
    neck=None,
    head=dict(
        type='VisionTransformerClsHead',
        num_classes=10,
        in_channels=64,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)),
)
