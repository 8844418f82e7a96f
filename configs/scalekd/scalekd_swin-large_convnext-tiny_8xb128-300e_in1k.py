# ScaleKD: Swin-L (ImageNet-21k -> 1k, 224 px) -> ConvNeXt-T, advanced
# recipe, as deep-optimization/ScaleKD's configs/distillers/
# advanced_training_strategy/swin-l_distill_convnext-t_img_s3_s4.py and its
# student config configs/convnext/convnext-tiny_32xb128_in1k.py: AdamW
# lr 1e-3, batch 1024 = 8 GPUs x 128 (published: 32 x 32), EMA 1e-4, no grad
# clip, no weight-decay exemption for class tokens or position embeddings
# (the projectors' decay); see the frame for the rest.
_base_ = [
    '../_base_/distill/scalekd_vit-advanced_in1k.py',
    '../_base_/teachers/swin-large_in21k-pre_in1k.py',
]

model = dict(
    # ConvNeXt-T (_base_/models/convnext/convnext-tiny.py of the published
    # code): drop-path 0.1, the final norm on the whole stage-4 map before
    # the pooling (gap_before_final_norm=False + the neck), label smoothing
    # 0.1.
    student=dict(
        _delete_=True,
        type='ImageClassifier',
        backbone=dict(
            type='ConvNeXt', arch='tiny', drop_path_rate=0.1,
            gap_before_final_norm=False),
        neck=dict(type='GlobalAveragePooling'),
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
    # Stage 3 (384x14x14, no norm) and stage 4 after the final norm
    # (768x7x7), the published student's backbone outputs 2 and 3.
    taps=dict(
        s_s3=dict(path='backbone.stages.2'),
        s_s4=dict(path='backbone.norm3')),
    connectors=dict(
        tpp={{_base_.scalekd_tpp_swin}},
        cap3=dict(arch='convnext-t-s3'), cap3_alt=dict(arch='convnext-t-s3'),
        cap4=dict(arch='convnext-t-s4'), cap4_alt=dict(arch='convnext-t-s4')),
)

train_dataloader = dict(batch_size=128)
# mmpretrain's Swin schedule paramwise_cfg alone (the published ConvNeXt
# config adds no custom keys) and no gradient clipping.
optim_wrapper = dict(
    paramwise_cfg=dict(
        _delete_=True,
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        flat_decay_mult=0.0,
        custom_keys={
            '.absolute_pos_embed': dict(decay_mult=0.0),
            '.relative_position_bias_table': dict(decay_mult=0.0)
        }),
    clip_grad=None)
