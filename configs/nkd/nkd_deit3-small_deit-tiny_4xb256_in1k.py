# NKD on ImageNet: DeiT III-Small (ImageNet-21k pre-trained, 1k fine-tuned,
# 224 px) -> DeiT-Tiny at mmpretrain's DeiT-Tiny recipe (4 GPUs x 256,
# AdamW, 300 epochs, Mixup/CutMix), NKD's ViT setting T=1, gamma=1.
# The target class of a mixed image is the arg-max of its soft label.
_base_ = ['mmpretrain::deit/deit-tiny_4xb256_in1k.py']
default_scope = 'cls_kd'

model = dict(
    _delete_=True,
    type='ClassificationDistiller',
    student={{_base_.model}},
    teacher=dict(
        config='mmpretrain::deit3/deit3-small-p16_64xb64_in1k.py',
        # mmpretrain 1.2.0's DeiT3 block ignores ln2: run the block the
        # weights were trained as (cls_kd/models/backbones/deit3.py).
        override=dict(backbone=dict(type='FixedDeiT3')),
        checkpoint='https://download.openmmlab.com/mmclassification/v0/'
        'deit3/deit3-small-p16_in21k-pre_3rdparty_in1k_20221009-dcd90827.pth'
    ),
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
