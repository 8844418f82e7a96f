# The distiller frame of the ResNet-34 -> ResNet-18 ImageNet configs: the
# student at mmpretrain's ResNet-18 recipe (8 GPUs x 32, SGD 0.1, 100
# epochs) and mmpretrain's ResNet-34 teacher. Method configs add `losses`.
_base_ = [
    # mmpretrain's resnet/resnet18_8xb32_in1k.py, its runtime cls_kd's.
    'mmpretrain::_base_/models/resnet18.py',
    'mmpretrain::_base_/datasets/imagenet_bs32.py',
    'mmpretrain::_base_/schedules/imagenet_bs256.py',
    '../in1k_runtime.py',
]

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
