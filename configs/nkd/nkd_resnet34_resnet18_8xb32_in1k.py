# NKD on ImageNet: ResNet-34 -> ResNet-18 at mmpretrain's ResNet-18 recipe
# (8 GPUs x 32, SGD 0.1, 100 epochs), NKD's CNN setting T=1, gamma=1.5,
# added to the student's CE at full weight.
_base_ = ['mmpretrain::resnet/resnet18_8xb32_in1k.py']
default_scope = 'cls_kd'

model = dict(
    _delete_=True,
    type='ClassificationDistiller',
    student={{_base_.model}},
    teacher=dict(
        config='mmpretrain::resnet/resnet34_8xb32_in1k.py',
        checkpoint='https://download.openmmlab.com/mmclassification/v0/'
        'resnet/resnet34_8xb32_in1k_20210831-f257d4e6.pth'),
    losses=dict(
        loss_nkd=dict(
            type='NKDLoss',
            temperature=1.0,
            gamma=1.5,
            inputs=dict(
                logits_s='logits_s', logits_t='logits_t', labels='labels'))),
)
