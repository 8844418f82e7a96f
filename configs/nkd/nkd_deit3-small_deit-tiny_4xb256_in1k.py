# NKD on ImageNet-1k: DeiT III-Small (ImageNet-21k pre-trained, 1k
# fine-tuned, 224 px) -> DeiT-Tiny. The authors' deit-s3_distill_deit-t_img.py
# (yzd-v/cls_KD) with its ViTKD switch off: NKD's ViT setting T = 1,
# gamma = 1, the student's cross-entropy at weight 1. The student's recipe is
# mmpretrain's DeiT-Tiny config, the one that config inherits (4 GPUs x 256,
# AdamW lr 1e-3, 300 epochs, RandAugment, Mixup/CutMix, label smoothing,
# grad-clip 5), with the authors' lr curve and teacher mode, shared with the
# ViTKD configs (../_base_/distill/vitkd_deit.py). The target class of a
# mixed image is the arg-max of its soft label, as in the authors' loss.
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
    losses=dict(
        loss_nkd=dict(
            type='NKDLoss',
            temperature=1.0,
            gamma=1.0,
            inputs=dict(
                logits_s='logits_s', logits_t='logits_t', labels='labels'))),
)

# The recipe's paramwise_cfg (no decay on norms, biases, tokens) would make
# one optimizer group per parameter; merged, it needs a handful.
optim_wrapper = dict(
    # Skips non-finite steps; optim_wrapper.skip_nonfinite=False: off.
    type='NonFiniteGuardOptimWrapper',
    constructor='MergedGroupsOptimWrapperConstructor')
param_scheduler = _base_.paper_param_scheduler
