# ScaleKD: Swin-L (ImageNet-21k -> 1k, 224 px) -> Swin-T, advanced recipe
# (300 epochs, AdamW lr 1e-3, batch 1024 = 8 GPUs x 128, EMA 1e-4; see the
# frame).
_base_ = [
    '../_base_/distill/scalekd_vit-advanced_in1k.py',
    '../_base_/teachers/swin-large_in21k-pre_in1k.py',
]

model = dict(
    # mmpretrain's Swin-T (_base_/models/swin_transformer/tiny_224.py:
    # drop-path 0.2, label smoothing 0.1) without Mixup/CutMix.
    student=dict(
        _delete_=True,
        type='ImageClassifier',
        backbone=dict(
            type='SwinTransformer', arch='tiny', img_size=224,
            drop_path_rate=0.2),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(
            type='LinearClsHead',
            num_classes=1000,
            in_channels=768,
            init_cfg=None,
            loss=dict(
                type='LabelSmoothLoss', label_smooth_val=0.1,
                mode='original'),
            cal_acc=False),
        init_cfg=[
            dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.),
            dict(type='Constant', layer='LayerNorm', val=1., bias=0.),
        ]),
    teacher={{_base_.teacher}},
    # The real stage-3 output, its last block's: tokens 384 x 14x14.
    # mmpretrain's stage module `stages.2` ends with the patch merging into
    # stage 4 (768 x 7x7), so tapping it would take the wrong stage (a
    # pitfall of the published code, METHODS.md §4). Stage 4: tokens
    # 768 x 7x7 after the final norm.
    taps=dict(
        s_s3=dict(path='backbone.stages.2.blocks.5'),
        s_s4=dict(path='backbone.norm3')),
    connectors=dict(
        tpp={{_base_.scalekd_tpp_swin}},
        cap3=dict(type='CrossAttentionProjector', arch='swin-t-s3'),
        cap3_alt=dict(type='CrossAttentionProjector', arch='swin-t-s3'),
        cap4=dict(type='CrossAttentionProjector', arch='swin-t-s4',
                  learnable_query=False),
        cap4_alt=dict(type='CrossAttentionProjector', arch='swin-t-s4',
                      learnable_query=False)),
    losses={{_base_.scalekd_losses}},
)
