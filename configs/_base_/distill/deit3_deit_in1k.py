# The frame of the ViTKD and NKD paper configs on ImageNet-1k: a DeiT III
# teacher (ImageNet-21k pre-trained, 1k fine-tuned, 224 px) -> a DeiT student
# at mmpretrain's DeiT recipe (AdamW lr 1e-3, 300 epochs, RandAugment,
# RandomErasing, Mixup/CutMix, label smoothing, grad-clip 5), with the
# authors' lr curve and teacher mode (./vitkd_deit.py). The recipe is
# mmpretrain's DeiT-Small config, as the authors' configs all inherit their
# DeiT-Small config: children set the student's arch and their teacher
#   model = dict(student=dict(backbone=dict(arch='deit-tiny'),
#                             head=dict(in_channels=192)),
#                teacher={{_base_.teacher}})
# with the teacher spec of ../teachers/ merged into the paper's teacher mode.
_base_ = ['mmpretrain::deit/deit-small_4xb256_in1k.py', './vitkd_deit.py']
# The recipe brings mmpretrain's runtime: ../in1k_runtime.py's lines.
default_scope = 'cls_kd'
default_hooks = dict(
    checkpoint=dict(type='SafeCheckpointHook', _scope_='cls_kd'),
    sync_buffers=dict(type='SyncStudentBuffersHook', _scope_='cls_kd'))

model = dict(
    _delete_=True,
    type='ClassificationDistiller',
    student={{_base_.model}},
    teacher={{_base_.paper_teacher}},
)

# The recipe's paramwise_cfg (no decay on norms, biases, tokens) would make
# one optimizer group per parameter; merged, it needs a handful.
optim_wrapper = dict(
    # Skips non-finite steps; optim_wrapper.skip_nonfinite=False: off.
    type='NonFiniteGuardOptimWrapper',
    constructor='MergedGroupsOptimWrapperConstructor')
param_scheduler = _base_.paper_param_scheduler
