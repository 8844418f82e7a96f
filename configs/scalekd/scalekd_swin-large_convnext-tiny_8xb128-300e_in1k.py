# ScaleKD: Swin-L (ImageNet-21k -> 1k, 224 px) -> ConvNeXt-T, advanced
# recipe (300 epochs, AdamW lr 1e-3, batch 1024 = 8 GPUs x 128, EMA 1e-4;
# see the frame).
_base_ = [
    '../_base_/distill/scalekd_vit-advanced_in1k.py',
    '../_base_/teachers/swin-large_in21k-pre_in1k.py',
]

model = dict(
    # mmpretrain's ConvNeXt-T (_base_/models/convnext/convnext-tiny.py:
    # drop-path 0.1, label smoothing 0.1) without Mixup/CutMix.
    student=dict(
        _delete_=True,
        type='ImageClassifier',
        backbone=dict(type='ConvNeXt', arch='tiny', drop_path_rate=0.1),
        head=dict(
            type='LinearClsHead',
            num_classes=1000,
            in_channels=768,
            loss=dict(
                type='LabelSmoothLoss', label_smooth_val=0.1,
                mode='original'),
            init_cfg=None),
        init_cfg=dict(
            type='TruncNormal', layer=['Conv2d', 'Linear'], std=.02,
            bias=0.)),
    teacher={{_base_.teacher}},
    # Stage 3 (384x14x14) and stage 4 (768x7x7), before the final norm.
    taps=dict(
        s_s3=dict(path='backbone.stages.2'),
        s_s4=dict(path='backbone.stages.3')),
    connectors=dict(
        tpp={{_base_.scalekd_tpp_swin}},
        cap3=dict(type='CrossAttentionProjector', arch='convnext-t-s3'),
        cap3_alt=dict(type='CrossAttentionProjector', arch='convnext-t-s3'),
        cap4=dict(type='CrossAttentionProjector', arch='convnext-t-s4',
                  learnable_query=False),
        cap4_alt=dict(type='CrossAttentionProjector', arch='convnext-t-s4',
                      learnable_query=False)),
    losses={{_base_.scalekd_losses}},
)

# No gradient clipping, as mmpretrain's ConvNeXt configs and the published
# ScaleKD ConvNeXt-T config.
optim_wrapper = dict(clip_grad=None)
