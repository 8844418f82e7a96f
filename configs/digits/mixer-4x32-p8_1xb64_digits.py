# Digits MLP student of the ScaleKD experiment: an MLP-Mixer with 8x8 patches
# (a 4x4 token grid, like the DeiT III teacher's), 4 layers, width 32.
_base_ = [
    '../_base_/datasets/digits_bs64.py',
    '../_base_/schedules/digits_adamw_40e.py',
    '../_base_/default_runtime.py',
]
default_hooks = dict(logger=dict(interval=10))
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='MlpMixer',
        arch=dict(
            embed_dims=32, num_layers=4, tokens_mlp_dims=16,
            channels_mlp_dims=128),
        img_size=32,
        patch_size=8,
        drop_path_rate=0.0),
    neck=dict(type='GlobalAveragePooling', dim=1),
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=32,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)),
)
# 15 epochs: the digits ScaleKD experiment (18 runs) fits in 20 CPU minutes.
train_cfg = dict(max_epochs=15)
