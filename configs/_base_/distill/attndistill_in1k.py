# AttnDistill's ImageNet-1k frame (label-free), as the authors' released
# scripts train (wangkai930418/attndistill: dino_teacher.sh, mugs_teacher.sh,
# dino_transfer.py, engine/engine_dino_transfer.py; pinned value by value by
# tests/configs/test_attndistill_recipe.py). Children set the student (a
# DINO-initialised ViT), the teacher (converted DINO / Mugs weights, see
# configs/attndistill/README.md), the projector's widths and the attention
# case (resize or head aggregation).
#   data     ImageNet train read without labels, one view:
#            RandomResizedCrop 224, scale (0.2, 1), bicubic + flip; the last
#            incomplete batch dropped.
#   schedule 800 epochs, 40 linear warm-up epochs, then cosine to 0 per
#            iteration; AdamW betas (0.9, 0.95), wd 0.05, none on 1-D
#            parameters and biases (class token and position embedding are
#            decayed); no gradient clipping; global batch 4096 = 8 GPUs x 128
#            x 4 accumulated steps (the scripts derive the accumulation from
#            the GPU count), lr 1.5e-4 x 4096 / 256; AMP (fp16, dynamic loss
#            scale); non-finite steps skipped.
#   teacher  eval mode, frozen (as the official code: see model.teacher).
#   eval     k-NN (k = 20, T = 0.07) on the student's class token after its
#            final norm, bank = the labelled train split.
_base_ = ['../in1k_runtime.py']

data_preprocessor = dict(
    num_classes=1000,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.2, 1.0),
         backend='pillow', interpolation='bicubic'),
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
    drop_last=True,
    dataset=dict(type='ImageNet', data_root='data/imagenet', split='train',
                 with_label=False, pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
knn_bank = dict(
    batch_size=256,
    num_workers=10,
    persistent_workers=True,
    dataset=dict(type='ImageNet', data_root='data/imagenet', split='train',
                 pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_dataloader = dict(
    batch_size=256,
    num_workers=10,
    persistent_workers=True,
    dataset=dict(type='ImageNet', data_root='data/imagenet', split='val',
                 pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_cfg = dict(type='KNNValLoop', bank_dataloader=knn_bank)
val_evaluator = [dict(type='KNNAccuracy', k=20, temperature=0.07,
                      topk=(1, 5))]
test_dataloader = val_dataloader
test_cfg = dict(type='KNNTestLoop', bank_dataloader=knn_bank)
test_evaluator = val_evaluator

attn_row = dict(type='attn_probs', query='cls')
model = dict(
    type='LabelFreeDistiller',
    # Eval mode for the whole run, as the official code: freeze_model() puts
    # the teacher in eval mode (util/misc.py:16-20) and the epoch loop only
    # calls student_model.train(True) (engine/engine_dino_transfer.py:21).
    teacher=dict(train_mode=False),
    # The student's class token leaves the last block (before the backbone's
    # final norm) through the projector; the teacher's is taken after its
    # final norm. Attention: the class-token row of the last block.
    taps=dict(
        s_cls=dict(path='layers.11', selector='cls_token'),
        s_attn=dict(path='layers.11.attn', selector=attn_row),
        t_cls=dict(model='teacher', path='backbone.ln1',
                   selector='cls_token'),
        t_attn=dict(model='teacher', path='backbone.layers.11.attn',
                    selector=attn_row)),
    losses=dict(
        loss_align=dict(
            type='AttnDistillAlignLoss',
            loss_weight=1.0,
            inputs=dict(preds='proj(s_cls)', targets='t_cls')),
        loss_attn=dict(
            type='AttnDistillAttentionLoss',
            loss_weight=0.1,
            tau=10.0,
            clamp=(1e-5, 0.996),
            inputs=dict(attn_s='s_attn', attn_t='t_attn'))),
)

optim_wrapper = dict(
    type='NonFiniteGuardAmpOptimWrapper',
    dtype='float16',
    loss_scale='dynamic',
    accumulative_counts=4,
    max_consecutive_skips=20,
    constructor='MergedGroupsOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1.5e-4 * 4096 / 256, betas=(0.9, 0.95),
                   weight_decay=0.05),
    paramwise_cfg=dict(bias_decay_mult=0.0, flat_decay_mult=0.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=40,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=40, end=800,
         eta_min=0.0, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=800, val_interval=100)
auto_scale_lr = dict(base_batch_size=4096)
default_hooks = dict(checkpoint=dict(interval=10, max_keep_ckpts=3))
