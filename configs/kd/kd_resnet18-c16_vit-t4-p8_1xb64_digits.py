# Hinton KD on digits: narrow ResNet-18 teacher -> tiny ViT student, T=4,
# alpha=0.5 (CE x 0.5 + KD x 0.5). Used by tools/run_digits_demo.py.
_base_ = ['../_base_/distill/resnet18-c16_vit-t4-p8_digits.py']

alpha = 0.5
model = dict(
    student_loss_weight=1 - alpha,
    losses=dict(
        loss_kd=dict(
            type='KDLoss',
            temperature=4.0,
            loss_weight=alpha,
            inputs=dict(logits_s='logits_s', logits_t='logits_t'))),
)
