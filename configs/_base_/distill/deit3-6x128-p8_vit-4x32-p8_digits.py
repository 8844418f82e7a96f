# The distiller frame of the digits ViTKD experiment: a 4-block, 32-wide ViT
# student (with the digits data and schedule) and a 6-block, 128-wide
# DeiT III teacher, same 8x8 patches (a 4x4 token grid in both). The teacher
# is trained with configs/digits/deit3-6x128-p8_1xb64_digits.py; pass its
# checkpoint with --cfg-options model.teacher.checkpoint=<teacher .pth>.
_base_ = ['../../digits/vit-4x32-p8_1xb64_digits.py']

model = dict(
    _delete_=True,
    type='ClassificationDistiller',
    student={{_base_.model}},
    teacher=dict(
        config='{{fileDirname}}/../../digits/deit3-6x128-p8_1xb64_digits.py',
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
