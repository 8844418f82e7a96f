# The distiller frame of the digits ViTKD experiment: the digits ViT student
# (4 blocks, width 64, with its data and schedule) and a 6-block, 128-wide
# DeiT III teacher, same 8x8 patches (a 4x4 token grid in both). The
# teacher is trained with configs/digits/deit3-s6-p8_1xb64_digits.py; pass
# its checkpoint with --cfg-options model.teacher.checkpoint=<teacher .pth>.
_base_ = ['../../digits/vit-t4-p8_1xb64_digits.py']

model = dict(
    _delete_=True,
    type='ClassificationDistiller',
    student={{_base_.model}},
    teacher=dict(
        config='configs/digits/deit3-s6-p8_1xb64_digits.py',
        checkpoint=None),
    losses=dict(),
)
