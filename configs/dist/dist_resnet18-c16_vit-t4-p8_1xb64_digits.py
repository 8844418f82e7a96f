# DIST on digits: narrow ResNet-18 teacher -> tiny ViT student, with the
# official ImageNet loss setting: 1 x CE + 2 x (inter + intra), tau = 1.
_base_ = ['../_base_/distill/resnet18-c16_vit-t4-p8_digits.py']

model = dict(
    student_loss_weight=1.0,
    losses=dict(
        loss_dist=dict(
            type='DISTLoss',
            temperature=1.0,
            beta=1.0,
            gamma=1.0,
            loss_weight=2.0,
            inputs=dict(logits_s='logits_s', logits_t='logits_t'))),
)
