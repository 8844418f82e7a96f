# DeiT hard-label distillation on ImageNet: RegNetY-16GF -> DeiT-Tiny with a
# distillation token, at mmpretrain's DeiT-Tiny recipe (4 GPUs x 256, AdamW,
# 300 epochs, Mixup/CutMix). Loss = 1/2 CE(class token, label) +
# 1/2 CE(distillation token, teacher arg-max); the prediction averages the
# two heads.
_base_ = [
    'mmpretrain::deit/deit-tiny-distilled_4xb256_in1k.py',
    '../_base_/teachers/regnety-160_in1k.py',
]
default_scope = 'cls_kd'
# Crash-safe checkpoints (atomic writes, old ones removed last), in cls_kd's
# scope: the hook dict inherited from mmpretrain carries its scope.
default_hooks = dict(
    checkpoint=dict(type='SafeCheckpointHook', _scope_='cls_kd'))

model = dict(
    _delete_=True,
    type='ClassificationDistiller',
    # mmpretrain's distilled DeiT-Tiny with a head that can be trained.
    student=dict(
        type='ImageClassifier',
        backbone=dict(
            type='DistilledVisionTransformer',
            arch='deit-tiny',
            img_size=224,
            patch_size=16),
        neck=None,
        head=dict(
            type='DeiTDistillHead',
            num_classes=1000,
            in_channels=192,
            loss=dict(
                type='LabelSmoothLoss', label_smooth_val=0.1,
                mode='original')),
        init_cfg=[
            dict(type='TruncNormal', layer='Linear', std=.02),
            dict(type='Constant', layer='LayerNorm', val=1., bias=0.),
        ],
        train_cfg=dict(augments=[
            dict(type='Mixup', alpha=0.8),
            dict(type='CutMix', alpha=1.0)
        ])),
    # DeiT's teacher: timm's RegNetY-16GF, normalised like the student
    # (ImageNet mean/std). The checkpoint is DeiT's, in timm's key layout.
    teacher={{_base_.teacher}},
    taps=dict(
        dist_logits=dict(model='student', path='head.layers.head_dist')),
    student_loss_weight=0.5,
    losses=dict(
        loss_deit=dict(
            type='DeiTDistillLoss',
            mode='hard',
            loss_weight=0.5,
            inputs=dict(logits_s='dist_logits', logits_t='logits_t'))),
)

# The recipe's paramwise_cfg (no decay on norms, biases, tokens) would make
# one optimizer group per parameter; merged, it needs a handful.
optim_wrapper = dict(constructor='MergedGroupsOptimWrapperConstructor')
