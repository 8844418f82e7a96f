# DearKD on digits with the demo's ViT 4x64 at patch 8 (a 4x4 token grid,
# 40 epochs): the patch-4 config (dearkd_resnet18-c16_vit-4x64-p4_1xb64_
# digits.py) with the teacher maps pooled to 4x4 and distillation for 32 of
# the 40 epochs. About 3x cheaper per step than patch 4; what `make
# dearkd-digits` runs, so that it fits in 20 minutes on 2 cores.
_base_ = ['./dearkd_resnet18-c16_vit-4x64-p4_1xb64_digits.py']

distill_epochs = 32

model = dict(
    student=dict(backbone=dict(patch_size=8)),
    connectors=dict(to_grid=dict(size=4)),
    stages=[
        dict(by='epoch', end=distill_epochs),
        dict(distill=False, student_loss_weight=1.0),
    ],
)
train_cfg = dict(max_epochs=40)
