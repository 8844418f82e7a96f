# ScaleKD's frame for ViT, Swin and ConvNeXt students at the paper's
# advanced recipe: ViT-B/16 (the ViT-S, ViT-B/14, Swin-T and ConvNeXt-T
# configs change or replace it), a Swin teacher's final feature as target
# (EVA configs replace it). Configs add the teacher, the student's taps, the
# connectors and the losses of ./scalekd.py. See configs/scalekd/README.md.
#   student  mmpretrain's DeiT-B (deit/deit-base_16xb64_in1k.py: drop-path
#            0.1, label smoothing 0.1) with global average pooling and no
#            class token, as the paper's ViT students: out_type='avg_featmap'
#            and final_norm=False, so the last LayerNorm (ln2) comes after
#            the pooling (timm's fc_norm); no Mixup/CutMix (ScaleKD's recipe).
#   data     8 GPUs x 128 = 1024; mmpretrain's DeiT/Swin pipeline
#            (_base_/datasets/imagenet_bs64_swin_224.py: RandAugment
#            magnitude 9, std 0.5, RandomErasing 0.25, bicubic crops).
#   schedule AdamW lr 1e-3 (5e-4 x 1024 / 512), wd 0.05, none on norms,
#            biases, 1-D parameters and position embeddings; 20 linear
#            warm-up epochs, then cosine to 1e-5, 300 epochs; grad-clip 5
#            (mmpretrain's DeiT/Swin schedule); EMA of the student's weights
#            with momentum 1e-4 (the paper; mmpretrain's ConvNeXt configs
#            use the same hook).
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
    './scalekd.py',
]
default_scope = 'cls_kd'
# Crash-safe checkpoints (atomic writes, old ones removed last). The hook
# dict inherited from mmpretrain's runtime carries `_scope_='mmpretrain'`,
# where SafeCheckpointHook is not registered: give cls_kd's scope.
default_hooks = dict(
    checkpoint=dict(type='SafeCheckpointHook', _scope_='cls_kd'))

model = dict(
    type='ClassificationDistiller',
    student=dict(
        type='ImageClassifier',
        backbone=dict(
            type='VisionTransformer',
            arch='deit-base',
            img_size=224,
            patch_size=16,
            drop_path_rate=0.1,
            with_cls_token=False,
            out_type='avg_featmap',
            final_norm=False),
        neck=None,
        head=dict(
            type='VisionTransformerClsHead',
            num_classes=1000,
            in_channels=768,
            loss=dict(
                type='LabelSmoothLoss', label_smooth_val=0.1,
                mode='original')),
        init_cfg=[
            dict(type='TruncNormal', layer='Linear', std=.02),
            dict(type='Constant', layer='LayerNorm', val=1., bias=0.),
        ]),
    # A Swin teacher's final feature: tokens (B, 49, C) after its final norm.
    taps=dict(t_final=dict(model='teacher', path='backbone.norm3')),
    # 0.5 CE + 0.5 KD + the mimicking terms (configs add them).
    student_loss_weight=0.5,
)

train_dataloader = dict(batch_size=128)
# The recipe's paramwise_cfg (no decay on norms, biases, tokens) would make
# one optimizer group per parameter; merged, it needs a handful. The custom
# keys are the union of mmpretrain's DeiT and Swin configs' (the projectors'
# position embeddings match '.pos_embed' too).
optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={
            '.cls_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0),
        }),
    clip_grad=dict(max_norm=5.0),
    constructor='MergedGroupsOptimWrapperConstructor')
custom_hooks = [dict(type='EMAHook', momentum=1e-4, priority='ABOVE_NORMAL')]
