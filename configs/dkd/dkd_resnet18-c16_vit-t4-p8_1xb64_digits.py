# DKD on digits: narrow ResNet-18 teacher -> tiny ViT student, with DKD's
# small-image (CIFAR-100) setting T=4, alpha=1, beta=8; its 20-of-240-epoch
# linear warm-up of the DKD weight becomes 3 of our 40 epochs.
_base_ = ['../_base_/distill/resnet18-c16_vit-t4-p8_digits.py']

model = dict(
    losses=dict(
        loss_dkd=dict(
            type='DKDLoss',
            temperature=4.0,
            alpha=1.0,
            beta=8.0,
            inputs=dict(
                logits_s='logits_s', logits_t='logits_t', labels='labels'),
            warmup=dict(by='epoch', length=3))),
)
