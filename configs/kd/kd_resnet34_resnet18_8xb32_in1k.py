# Hinton KD on ImageNet: ResNet-34 -> ResNet-18 at mmpretrain's ResNet-18
# recipe (8 GPUs x 32, SGD 0.1, 100 epochs), T=1 and alpha=0.5 as in the
# ImageNet KD baseline of the DKD authors' code (mdistiller).
_base_ = ['mmpretrain::resnet/resnet18_8xb32_in1k.py']
default_scope = 'cls_kd'

alpha = 0.5
model = dict(
    _delete_=True,
    type='ClassificationDistiller',
    student={{_base_.model}},
    teacher=dict(
        config='mmpretrain::resnet/resnet34_8xb32_in1k.py',
        checkpoint='https://download.openmmlab.com/mmclassification/v0/'
        'resnet/resnet34_8xb32_in1k_20210831-f257d4e6.pth'),
    student_loss_weight=1 - alpha,
    losses=dict(
        loss_kd=dict(
            type='KDLoss',
            temperature=1.0,
            loss_weight=alpha,
            inputs=dict(logits_s='logits_s', logits_t='logits_t'))),
)
