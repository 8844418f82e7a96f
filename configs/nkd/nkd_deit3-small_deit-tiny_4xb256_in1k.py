# NKD on ImageNet: DeiT III-Small (ImageNet-21k pre-trained, 1k fine-tuned,
# 224 px) -> DeiT-Tiny at mmpretrain's DeiT-Tiny recipe (4 GPUs x 256,
# AdamW, 300 epochs, Mixup/CutMix), NKD's ViT setting T=1, gamma=1.
# The target class of a mixed image is the arg-max of its soft label.
_base_ = [
    'mmpretrain::deit/deit-tiny_4xb256_in1k.py',
    '../_base_/teachers/deit3-small-p16_in21k-pre_in1k.py',
]
default_scope = 'cls_kd'
# Crash-safe checkpoints (atomic writes, old ones removed last), in cls_kd's
# scope: the hook dict inherited from mmpretrain carries its scope.
default_hooks = dict(
    checkpoint=dict(type='SafeCheckpointHook', _scope_='cls_kd'))

model = dict(
    _delete_=True,
    type='ClassificationDistiller',
    student={{_base_.model}},
    teacher={{_base_.teacher}},
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
optim_wrapper = dict(constructor='MergedGroupsOptimWrapperConstructor')
