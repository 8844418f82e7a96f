# The distiller frame of the digits ScaleKD experiment: the student is
# a 4-layer, 32-wide MLP-Mixer (8x8 patches, a 4x4 token grid),
# with its digits data and schedule; the teacher the 4-block, 64-wide ViT
# (8x8 patches, a 4x4 token grid) trained with
# configs/digits/vit-t4-p8_1xb64_digits.py; pass its checkpoint with
# --cfg-options model.teacher.checkpoint=<teacher .pth>.
_base_ = ['../../digits/mixer-4x32-p8_1xb64_digits.py']

model = dict(
    _delete_=True,
    type='ClassificationDistiller',
    student={{_base_.model}},
    teacher=dict(
        config='{{fileDirname}}/../../digits/vit-t4-p8_1xb64_digits.py',
        checkpoint=None),
    losses=dict(),
)

# Validation also reports the teacher's top-1 and how closely the student
# follows it (teacher/top1, teacher/agreement, teacher/kl).
val_evaluator = [
    dict(type='Accuracy', topk=(1, )),
    dict(type='TeacherAgreementMetric'),
]
test_evaluator = val_evaluator
