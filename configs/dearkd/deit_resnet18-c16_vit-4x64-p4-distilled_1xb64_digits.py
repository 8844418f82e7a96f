# DearKD's logit term alone on digits: DeiT hard-label distillation through a
# distillation token, from the narrow ResNet-18 teacher into the 4x64 ViT
# with 4x4 patches. The "logit-token KD" arm of the digits experiment
# (make dearkd-digits). Train the teacher with
# configs/digits/resnet18-c16_1xb64_digits.py and pass its checkpoint with
# --cfg-options model.teacher.checkpoint=<teacher .pth>.
_base_ = ['../deit/deit_resnet18-c16_vit-t4-p8-distilled_1xb64_digits.py']

model = dict(student=dict(backbone=dict(patch_size=4)))
# As configs/digits/vit-4x64-p4_1xb64_digits.py.
train_cfg = dict(max_epochs=30)
