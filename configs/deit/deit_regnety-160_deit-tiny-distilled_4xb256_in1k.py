# DeiT hard-label distillation on ImageNet: RegNetY-16GF -> DeiT-Tiny with a
# distillation token, as facebookresearch/deit's main.py trains it with its
# README_deit.md command (--distillation-type hard --teacher-model
# regnety_160; 4 GPUs x 256, AdamW lr 5e-4 x 1024 / 512, 300 epochs,
# RandAugment, RandomErasing, Mixup/CutMix, label smoothing). Loss =
# 1/2 CE(class token, label) + 1/2 CE(distillation token, teacher arg-max);
# the prediction averages the two heads. The base is mmpretrain's DeiT-Tiny
# config; where it differs from DeiT's code, the lines below restore DeiT's
# values (tests/configs/test_logit_recipe.py cites them).
_base_ = [
    'mmpretrain::deit/deit-tiny-distilled_4xb256_in1k.py',
    '../_base_/teachers/regnety-160_in1k.py',
]
default_scope = 'cls_kd'
# Crash-safe checkpoints (atomic writes, old ones removed last), in cls_kd's
# scope: the hook dict inherited from mmpretrain carries its scope.
default_hooks = dict(
    checkpoint=dict(type='SafeCheckpointHook', _scope_='cls_kd'),
    # Every rank's BatchNorm statistics averaged before validation and
    # saving (cls_kd's runtime default; this file's base is mmpretrain's).
    sync_buffers=dict(type='SyncStudentBuffersHook', _scope_='cls_kd'))

model = dict(
    _delete_=True,
    type='ClassificationDistiller',
    # mmpretrain's distilled DeiT-Tiny with a head that can be trained.
    student=dict(
        type='ImageClassifier',
        # mmpretrain's DistilledVisionTransformer initialised as DeiT's code
        # (timm 0.3.2: trunc-normal 0.02 on Linear weights and the tokens).
        backbone=dict(
            type='TimmInitDistilledVisionTransformer',
            arch='deit-tiny',
            img_size=224,
            patch_size=16,
            # main.py --drop-path default (mmpretrain's DeiT-Tiny: 0).
            drop_path_rate=0.1),
        neck=None,
        head=dict(
            type='DeiTDistillHead',
            num_classes=1000,
            in_channels=192,
            loss=dict(
                type='LabelSmoothLoss', label_smooth_val=0.1,
                mode='original'),
            # Both heads trunc-normal 0.02 as timm's ViT under DeiT (models.py:
            # head_dist.apply(_init_weights)); mmpretrain's head: zeros.
            init_cfg=dict(type='TruncNormal', layer='Linear', std=.02)),
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
# one optimizer group per parameter; merged, it needs a handful. No gradient
# clip: main.py --clip-grad None (mmpretrain's config: 5).
optim_wrapper = dict(
    # Skips non-finite steps; optim_wrapper.skip_nonfinite=False: off.
    type='NonFiniteGuardOptimWrapper',
    constructor='MergedGroupsOptimWrapperConstructor', clip_grad=None)
# timm's cosine scheduler as main.py builds it, stepped once an epoch: a
# 5-epoch linear warm-up from --warmup-lr 1e-6 (1e-3 x the lr) towards the
# lr, then the cosine of epoch t over all 300 epochs down to --min-lr 1e-5
# (timm 0.3.2 does not shift the cosine by the warm-up). The two schedulers
# over one another draw it: LinearLR's factor reaches 1 at its end - 1.
# (mmpretrain's: 20 warm-up epochs per iteration, then a cosine after them.)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=6),
    dict(
        type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=0,
        end=300),
]
# main.py --repeated-aug (on by default): RASampler, 3 repeats; mmpretrain's
# RepeatAugSampler is its port.
train_dataloader = dict(
    sampler=dict(type='RepeatAugSampler', num_repeats=3, shuffle=True))
