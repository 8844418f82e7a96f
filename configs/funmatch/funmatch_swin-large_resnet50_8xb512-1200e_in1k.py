# FunMatch, "function matching" (Beyer et al., CVPR 2022) on ScaleKD's
# Swin-L -> ResNet-50 pair, with FunMatch's own recipe: the ImageNet config
# of the official code, big_vision/configs/proj/distill/bit_i1k.py
# (google-research/big_vision@0127fb6), line numbers below. The student and
# teacher are ScaleKD's (its config names BiT-R152x2 -> BiT-R50x1);
# configs/funmatch/README.md lists what differs.
#   consistent  teacher and student see the same crop of the same mixed-up
#               image: one pipeline and one Mixup, applied once per batch
#               by the distiller (trainers/proj/distill/distill.py:256-261;
#               both models read data["image"], :223-226).
#   patient     1200 epochs (bit_i1k.py:48), batch 4096 = 8 GPUs x 512 (:44).
_base_ = ['../scalekd/scalekd_swin-large_resnet50_8xb256-300e_in1k.py']

model = dict(
    # Official: only the student runs with train=True
    # (trainers/proj/distill/distill.py:226); the teacher is in eval mode.
    teacher=dict(train_mode=False),
    student=dict(
        # The student network of the row, without the advanced recipe's
        # drop-path: FunMatch's recipe has no regulariser besides Mixup.
        backbone=dict(drop_path_rate=0.0),
        # Mixup on every batch, mixing ratio ~ Beta(1, 1) (config.mixup =
        # dict(p=1.0): bit_i1k.py:76; utils.get_mixup). The distiller
        # applies the student's batch augments once: the teacher sees the
        # mixed images too.
        train_cfg=dict(augments=[dict(type='Mixup', alpha=1.0)])),
    taps=dict(_delete_=True),
    connectors=dict(_delete_=True),
    # KD only, no label loss: the objective is the KL divergence to the
    # teacher at T = 1 (distance 'kl', t=1.0: bit_i1k.py:79-80; the loss is
    # the distill loss alone: distill.py:240-247). The student's own loss is
    # computed for the log only.
    student_loss_weight=0.0,
    losses=dict(
        _delete_=True,
        loss_kd=dict(
            type='KDLoss', temperature=1.0, loss_weight=1.0, form='kl',
            inputs=dict(logits_s='logits_s', logits_t='logits_t'))),
)

# Inception crop (5-100 % of the area, aspect 3/4-4/3, bilinear) and a
# horizontal flip, nothing else (bit_i1k.py:70-73; pp/ops_image.py:199-201).
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.05, 1.0),
         aspect_ratio_range=(0.75, 1.33), interpolation='bilinear'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
# Evaluation: shorter side to 256 (area interpolation), central 224 crop
# (bit_i1k.py:74; resize_small's default method, pp/ops_image.py:108).
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short', interpolation='area'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=512, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# Adam (b1 0.9, b2 0.999, eps 1e-8), lr 0.03, decoupled weight decay 3e-4
# on weights only (biases and norms exempt), global grad-norm clip 1.0
# (bit_i1k.py:83-88; optax.py:100-150). big_vision adds wd x param to the
# update *before* the schedule and without the lr: in AdamW's terms
# (lr x wd x param) that is weight_decay = 3e-4 / 0.03 = 0.01.
optim_wrapper = dict(
    _delete_=True,
    # Skips non-finite steps; optim_wrapper.skip_nonfinite=False: off.
    type='NonFiniteGuardOptimWrapper',
    optimizer=dict(
        type='AdamW', lr=0.03, betas=(0.9, 0.999), eps=1e-8,
        weight_decay=0.01),
    # big_vision decays only the kernels (wd_mults default '.*/kernel$',
    # optax.py:133): conv and linear weights, not biases or norms.
    paramwise_cfg=dict(bias_decay_mult=0., norm_decay_mult=0.),
    clip_grad=dict(max_norm=1.0),
    constructor='MergedGroupsOptimWrapperConstructor')
# 5000 linear warm-up steps from 0, then cosine to 0 (bit_i1k.py:89;
# utils.create_learning_rate_schedule). 16 epochs of 313 steps at batch
# 4096 start the cosine 8 steps after the warm-up ends.
param_scheduler = [
    dict(type='LinearLR', start_factor=0.0, by_epoch=False, begin=0,
         end=5000),
    dict(type='CosineAnnealingLR', T_max=1184, eta_min=0.0, by_epoch=True,
         begin=16, end=1200, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=1200)
auto_scale_lr = dict(base_batch_size=4096)
