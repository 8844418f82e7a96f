# Hinton KD on ImageNet: ResNet-34 -> ResNet-18 at mmpretrain's ResNet-18
# recipe, T=1 and alpha=0.5 as in the ImageNet KD baseline of the DKD
# authors' code (mdistiller).
_base_ = ['../_base_/distill/resnet34_resnet18_in1k.py']

alpha = 0.5
model = dict(
    student_loss_weight=1 - alpha,
    losses=dict(
        loss_kd=dict(
            type='KDLoss',
            temperature=1.0,
            loss_weight=alpha,
            inputs=dict(logits_s='logits_s', logits_t='logits_t'))),
)
