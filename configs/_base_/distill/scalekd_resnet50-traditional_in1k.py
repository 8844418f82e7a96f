# ScaleKD's frame for the ResNet-50 student at the paper's traditional
# recipe, mmpretrain's resnet/resnet50_8xb32_in1k.py unchanged: 8 GPUs x 32
# = 256, SGD lr 0.1, momentum 0.9, wd 1e-4, 100 epochs, lr x 0.1 at epochs
# 30, 60 and 90; cross-entropy, RandomResizedCrop + flip. A Swin teacher's
# final feature as target. Configs add the teacher, the student's taps, the
# connectors and the losses of ./scalekd.py. See configs/scalekd/README.md.
_base_ = [
    'mmpretrain::resnet/resnet50_8xb32_in1k.py',
    './scalekd.py',
]
default_scope = 'cls_kd'
# Crash-safe checkpoints (atomic writes, old ones removed last). The hook
# dict inherited from mmpretrain's runtime carries `_scope_='mmpretrain'`,
# where SafeCheckpointHook is not registered: give cls_kd's scope.
default_hooks = dict(
    checkpoint=dict(type='SafeCheckpointHook', _scope_='cls_kd'))

model = dict(
    _delete_=True,
    type='ClassificationDistiller',
    student={{_base_.model}},
    # A Swin teacher's final feature: tokens (B, 49, C) after its final norm.
    taps=dict(t_final=dict(model='teacher', path='backbone.norm3')),
    # 0.5 CE + 0.5 KD + the mimicking terms (configs add them).
    student_loss_weight=0.5,
)
# One optimizer group per distinct setting; SGD fused on CUDA.
optim_wrapper = dict(constructor='MergedGroupsOptimWrapperConstructor')
