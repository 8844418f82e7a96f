# Hinton KD on digits from a timm teacher: timm's ResNet-18 at 16 base
# channels (configs/digits/timm-resnet18-c16_1xb64_digits.py, trained with
# that config; pass its checkpoint with
# --cfg-options model.teacher.checkpoint=<teacher .pth>) -> the digits ViT
# student, T = 4, alpha = 0.5, as kd_resnet18-c16_vit-t4-p8_1xb64_digits.py.
_base_ = ['./kd_resnet18-c16_vit-t4-p8_1xb64_digits.py']

model = dict(
    teacher=dict(
        config='{{fileDirname}}/../digits/'
        'timm-resnet18-c16_1xb64_digits.py'))
