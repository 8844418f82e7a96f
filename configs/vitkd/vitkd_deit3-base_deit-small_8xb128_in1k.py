# ViTKD on ImageNet-1k: DeiT III-Base (ImageNet-21k pre-trained, 1k
# fine-tuned, 224 px) -> DeiT-Small, at mmpretrain's DeiT recipe for the
# student with the batch of the paper, 1024 = 8 GPUs x 128 (lr 1e-3 as in
# mmpretrain's recipe, which is written for 1024; 300 epochs, Mixup/CutMix,
# label smoothing, grad-clip 5).
_base_ = [
    'mmpretrain::deit/deit-small_4xb256_in1k.py',
    '../_base_/distill/vitkd_deit.py',
    '../_base_/teachers/deit3-base-p16_in21k-pre_in1k.py',
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
    taps={{_base_.vitkd_taps}},
    connectors=dict(
        mimic0=dict(type='LinearConnector', in_channels=384, out_channels=768),
        mimic1=dict(type='LinearConnector', in_channels=384, out_channels=768),
        gen=dict(type='ViTKDGenerator', in_channels=384, out_channels=768,
                 mask_ratio=0.5)),
    losses={{_base_.vitkd_losses}},
)

train_dataloader = dict(batch_size=128)
# The recipe's paramwise_cfg (no decay on norms, biases, tokens) would make
# one optimizer group per parameter; merged, it needs a handful.
optim_wrapper = dict(constructor='MergedGroupsOptimWrapperConstructor')
