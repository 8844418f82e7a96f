# ScaleKD: Swin-L (ImageNet-21k -> 1k, 224 px) -> Swin-T, advanced recipe,
# as deep-optimization/ScaleKD's configs/distillers/
# advanced_training_strategy/swin-l_distill_swin-t_img_s3_s4.py and its
# student config configs/swin_transformer/swin-tiny_16xb64_in1k.py: AdamW
# lr 1e-3, batch 512 = 8 GPUs x 64 (published: 32 x 16), EMA 1e-4,
# grad-clip 5, no weight-decay exemption for class tokens or position
# embeddings (the projectors' decay); see the frame for the rest.
_base_ = [
    '../_base_/distill/scalekd_vit-advanced_in1k.py',
    '../_base_/teachers/swin-large_in21k-pre_in1k.py',
]

model = dict(
    # Swin-T (_base_/models/swin_transformer/tiny_224.py of the published
    # code): drop-path 0.05, label smoothing 0.1. Stage outputs 2 and 3
    # get their norms (norm2, norm3), as the published student's.
    student=dict(
        _delete_=True,
        type='ImageClassifier',
        backbone=dict(
            type='SwinTransformer', arch='tiny', img_size=224,
            drop_path_rate=0.05, out_indices=(2, 3)),
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
    # Stage 3 (tokens 384 x 14x14) and stage 4 (768 x 7x7), each after its
    # stage norm. The published backbone prepends the patch embedding to
    # its outputs, so its distiller's "stage 3" is stage 2 (192 x 28x28),
    # which the 384-channel projector cannot take; we tap the stage the
    # projectors are sized for (README, "Differences").
    taps=dict(
        s_s3=dict(path='backbone.norm2'),
        s_s4=dict(path='backbone.norm3')),
    connectors=dict(
        tpp={{_base_.scalekd_tpp_swin}},
        cap3=dict(arch='swin-t-s3'), cap3_alt=dict(arch='swin-t-s3'),
        cap4=dict(arch='swin-t-s4'), cap4_alt=dict(arch='swin-t-s4')),
)

# mmpretrain's Swin schedule paramwise_cfg alone (the published Swin-T
# config adds no custom keys).
optim_wrapper = dict(
    paramwise_cfg=dict(
        _delete_=True,
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        flat_decay_mult=0.0,
        custom_keys={
            '.absolute_pos_embed': dict(decay_mult=0.0),
            '.relative_position_bias_table': dict(decay_mult=0.0)
        }))
