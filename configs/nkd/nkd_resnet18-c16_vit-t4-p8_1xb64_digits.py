# NKD on digits: narrow ResNet-18 teacher -> tiny ViT student, with NKD's
# small-image (CIFAR-100) setting T=3, gamma=3.5.
# Train the teacher with configs/digits/resnet18-c16_1xb64_digits.py first
# and pass its checkpoint (see README).
_base_ = ['../digits/vit-t4-p8_1xb64_digits.py']

model = dict(
    _delete_=True,
    type='ClassificationDistiller',
    student={{_base_.model}},
    teacher=dict(
        config='configs/digits/resnet18-c16_1xb64_digits.py',
        checkpoint=None),  # set model.teacher.checkpoint=<teacher .pth>
    losses=dict(
        loss_nkd=dict(
            type='NKDLoss',
            temperature=3.0,
            gamma=3.5,
            inputs=dict(
                logits_s='logits_s', logits_t='logits_t', labels='labels'))),
)
