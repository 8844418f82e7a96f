# Linear probe (DINO protocol) of a distilled ViT-S/16 backbone, as DINO's
# eval_linear.py evaluates a ViT-S (facebookresearch/dino): the frozen
# backbone's class tokens of its last 4 blocks, each through the final norm,
# concatenated (n_last_blocks = 4, no average-pooled patch tokens) -> one
# linear layer (no BatchNorm), N(0, 0.01) init; SGD momentum 0.9, no weight
# decay, lr 0.001 x 1024 / 256 (8 GPUs x 128), cosine to 0 stepped per
# epoch over 100 epochs; RandomResizedCrop 224 (bilinear, scale (0.08, 1))
# + flip; evaluation: resize 256 (bicubic) -> center crop 224, every epoch;
# DINO reports the best epoch's top-1 (the checkpoint hook keeps it).
# The backbone comes from the distillation checkpoint, exported by
#   python tools/model_converters/extract_student.py <epoch_800.pth> \
#       checkpoints/attndistill_vit-small-p16.pth
_base_ = ['../_base_/in1k_runtime.py']
default_hooks = dict(
    checkpoint=dict(save_best='accuracy/top1', rule='greater'))

n_last_blocks = 4
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='DINOVisionTransformer',
        arch='deit-small',
        img_size=224,
        patch_size=16,
        out_indices=tuple(range(12 - n_last_blocks, 12)),
        out_type='raw',
        frozen_stages=12,
        # The exporter writes a bare backbone under `backbone.`.
        init_cfg=dict(type='Pretrained',
                      checkpoint='checkpoints/attndistill_vit-small-p16.pth',
                      prefix='backbone.')),
    neck=None,
    head=dict(
        type='DINOLinearClsHead',
        num_classes=1000,
        in_channels=384 * n_last_blocks,
        avgpool_patchtokens=False,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        init_cfg=dict(type='Normal', layer='Linear', std=0.01)))

data_preprocessor = dict(
    num_classes=1000,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, backend='pillow',
         interpolation='bilinear'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=128,
    num_workers=10,
    persistent_workers=True,
    dataset=dict(type='ImageNet', data_root='data/imagenet', split='train',
                 pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=128,
    num_workers=10,
    persistent_workers=True,
    dataset=dict(type='ImageNet', data_root='data/imagenet', split='val',
                 pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

optim_wrapper = dict(
    # Skips non-finite steps; optim_wrapper.skip_nonfinite=False: off.
    type='NonFiniteGuardOptimWrapper',
    optimizer=dict(type='SGD', lr=0.001 * 1024 / 256, momentum=0.9,
                   weight_decay=0.0),
    # Fused SGD on CUDA.
    constructor='MergedGroupsOptimWrapperConstructor')
# Stepped once per epoch, as DINO's torch CosineAnnealingLR(T_max=epochs).
param_scheduler = [
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=100,
         eta_min=0.0)
]
train_cfg = dict(by_epoch=True, max_epochs=100, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=1024)
