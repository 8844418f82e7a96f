# Linear probe of a distilled ViT-S/16 backbone (DINO-style): frozen
# backbone, its class token after the final norm -> BatchNorm (no affine
# parameters) -> linear head; SGD momentum 0.9, no weight decay,
# lr 0.001 x 1024 / 256, cosine over 100 epochs, RandomResizedCrop + flip.
# The backbone comes from the distillation checkpoint, exported by
#   python tools/model_converters/extract_student.py <epoch_800.pth> \
#       checkpoints/attndistill_vit-small-p16.pth
_base_ = ['mmpretrain::_base_/default_runtime.py']
default_scope = 'cls_kd'
# Crash-safe checkpoints (atomic writes, old ones removed last), in cls_kd's
# scope: the hook dict inherited from mmpretrain carries its scope.
default_hooks = dict(
    checkpoint=dict(type='SafeCheckpointHook', _scope_='cls_kd'))

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='VisionTransformer',
        arch='deit-small',
        img_size=224,
        patch_size=16,
        out_type='cls_token',
        frozen_stages=12,
        init_cfg=dict(type='Pretrained',
                      checkpoint='checkpoints/attndistill_vit-small-p16.pth')),
    neck=dict(type='ClsBatchNormNeck', input_features=384),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=384,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=0.01)))

data_preprocessor = dict(
    num_classes=1000,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, backend='pillow',
         interpolation='bicubic'),
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
    batch_size=256,
    num_workers=10,
    persistent_workers=True,
    dataset=dict(type='ImageNet', data_root='data/imagenet', split='val',
                 pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.001 * 1024 / 256, momentum=0.9,
                   weight_decay=0.0),
    # Fused SGD on CUDA.
    constructor='MergedGroupsOptimWrapperConstructor')
param_scheduler = [
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=100,
         eta_min=0.0, convert_to_iter_based=True)
]
train_cfg = dict(by_epoch=True, max_epochs=100, val_interval=10)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=1024)
