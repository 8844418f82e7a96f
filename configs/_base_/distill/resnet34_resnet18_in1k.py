# The distiller frame of the ResNet-34 -> ResNet-18 ImageNet configs: the
# student at mmpretrain's ResNet-18 recipe (8 GPUs x 32, SGD 0.1, 100
# epochs) and mmpretrain's ResNet-34 teacher. Method configs add `losses`.
_base_ = ['mmpretrain::resnet/resnet18_8xb32_in1k.py']
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
    teacher=dict(
        config='mmpretrain::resnet/resnet34_8xb32_in1k.py',
        checkpoint='https://download.openmmlab.com/mmclassification/v0/'
        'resnet/resnet34_8xb32_in1k_20210831-f257d4e6.pth'),
    losses=dict(),
)
# One optimizer group per distinct setting; SGD fused on CUDA.
optim_wrapper = dict(
    # Skips non-finite steps; optim_wrapper.skip_nonfinite=False: off.
    type='NonFiniteGuardOptimWrapper',
    constructor='MergedGroupsOptimWrapperConstructor')
