# NKD on digits: narrow ResNet-18 teacher -> tiny ViT student, with NKD's
# small-image (CIFAR-100) setting T=3, gamma=3.5.
_base_ = ['../_base_/distill/resnet18-c16_vit-t4-p8_digits.py']

model = dict(
    losses=dict(
        loss_nkd=dict(
            type='NKDLoss',
            temperature=3.0,
            gamma=3.5,
            inputs=dict(
                logits_s='logits_s', logits_t='logits_t', labels='labels'))),
)
