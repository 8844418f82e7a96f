# The distiller frame of the digits method configs: the digits ViT student
# (with its data and schedule) and the narrow ResNet-18 teacher. Method
# configs add their `losses`. The teacher is trained with
# configs/digits/resnet18-c16_1xb64_digits.py; pass its checkpoint with
# --cfg-options model.teacher.checkpoint=<teacher .pth>.
_base_ = ['../../digits/vit-t4-p8_1xb64_digits.py']

model = dict(
    _delete_=True,
    type='ClassificationDistiller',
    student={{_base_.model}},
    teacher=dict(
        config='{{fileDirname}}/../../digits/resnet18-c16_1xb64_digits.py',
        checkpoint=None),
    losses=dict(),
)

# Validation also reports the teacher's top-1 and how closely the student
# follows it (teacher/top1, teacher/agreement, teacher/kl); the teacher runs
# once per val image and its scores are reused in later validations.
val_evaluator = [
    dict(type='Accuracy', topk=(1, )),
    dict(type='TeacherAgreementMetric'),
]
test_evaluator = val_evaluator
