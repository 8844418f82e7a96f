# NKD on ImageNet: ResNet-34 -> ResNet-18 at mmpretrain's ResNet-18 recipe,
# NKD's CNN setting T=1, gamma=1.5, added to the student's CE at full weight.
_base_ = ['../_base_/distill/resnet34_resnet18_in1k.py']

model = dict(
    losses=dict(
        loss_nkd=dict(
            type='NKDLoss',
            temperature=1.0,
            gamma=1.5,
            inputs=dict(
                logits_s='logits_s', logits_t='logits_t', labels='labels'))),
)
