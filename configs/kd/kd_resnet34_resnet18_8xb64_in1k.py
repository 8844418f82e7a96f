# Hinton KD on ImageNet-1k: ResNet-34 -> ResNet-18 as in the DKD authors'
# KD baseline (mdistiller, configs/imagenet/r34_r18/kd.yaml): T = 1, the
# student's cross-entropy at 0.5 and the KD term at 0.5, their recipe
# (batch 512, SGD lr 0.2, 100 epochs, steps at 30/60/90, torchvision's
# ResNet-34 teacher; ../_base_/distill/resnet34_resnet18_mdistiller_in1k.py).
_base_ = ['../_base_/distill/resnet34_resnet18_mdistiller_in1k.py']

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
