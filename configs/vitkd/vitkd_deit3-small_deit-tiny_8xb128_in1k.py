# ViTKD on ImageNet-1k: DeiT III-Small (ImageNet-21k pre-trained, 1k
# fine-tuned, 224 px) -> DeiT-Tiny. The authors' deit-s3_distill_deit-t_img.py
# (yzd-v/cls_KD) with its NKD switch off. The student's recipe is
# mmpretrain's DeiT config, the one that config inherits (AdamW lr 1e-3,
# 300 epochs, RandAugment, RandomErasing, Mixup/CutMix, label smoothing,
# grad-clip 5), with the authors' lr curve and teacher mode
# (../_base_/distill/vitkd_deit.py). Batch 1024 = 8 GPUs x 128 (theirs:
# 4 GPUs x 256, also 1024).
_base_ = [
    'mmpretrain::deit/deit-tiny_4xb256_in1k.py',
    '../_base_/distill/vitkd_deit.py',
    '../_base_/teachers/deit3-small-p16_in21k-pre_in1k.py',
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
    student={{_base_.model}},
    teacher={**_base_.teacher, **_base_.paper_teacher},
    taps={{_base_.vitkd_taps}},
    connectors=dict(
        mimic0=dict(type='LinearConnector', in_channels=192, out_channels=384),
        mimic1=dict(type='LinearConnector', in_channels=192, out_channels=384),
        gen=dict(type='ViTKDGenerator', in_channels=192, out_channels=384,
                 mask_ratio=0.5)),
    losses={{_base_.vitkd_losses}},
)

train_dataloader = dict(batch_size=128)
# The recipe's paramwise_cfg (no decay on norms, biases, tokens) would make
# one optimizer group per parameter; merged, it needs a handful.
optim_wrapper = dict(
    # Skips non-finite steps; optim_wrapper.skip_nonfinite=False: off.
    type='NonFiniteGuardOptimWrapper',
    constructor='MergedGroupsOptimWrapperConstructor')
param_scheduler = _base_.paper_param_scheduler
