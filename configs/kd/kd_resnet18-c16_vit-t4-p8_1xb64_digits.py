# Hinton KD on digits: narrow ResNet-18 teacher -> tiny ViT student.
# The demo (tools/run_digits_demo.py) trains the teacher with
# configs/digits/resnet18-c16_1xb64_digits.py and passes its checkpoint.
_base_ = ['../digits/vit-t4-p8_1xb64_digits.py']

alpha = 0.5
model = dict(
    _delete_=True,
    type='ClassificationDistiller',
    student={{_base_.model}},
    teacher=dict(
        config='configs/digits/resnet18-c16_1xb64_digits.py',
        checkpoint=None),  # set model.teacher.checkpoint=<teacher .pth>
    student_loss_weight=1 - alpha,
    losses=dict(
        loss_kd=dict(
            type='KDLoss',
            temperature=4.0,
            loss_weight=alpha,
            inputs=dict(logits_s='logits_s', logits_t='logits_t'))),
)
