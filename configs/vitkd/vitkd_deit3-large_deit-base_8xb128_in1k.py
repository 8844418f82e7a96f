# ViTKD on ImageNet-1k: DeiT III-Large (ImageNet-21k pre-trained, 1k
# fine-tuned, 224 px) -> DeiT-Base. The authors' deit-l3_distill_deit-b_img.py
# (yzd-v/cls_KD) with its NKD switch off; recipe, lr curve, teacher mode and
# wiring in ../_base_/distill/vitkd_deit3_deit_in1k.py. Batch 1024 = 8 GPUs x
# 128 (theirs: 16 GPUs x 64, also 1024). Connector widths (768 -> 1024) are
# measured by the build-time dry run.
# DeiT-Base: drop-path 0.1 and EMA (momentum 4e-5), as mmpretrain's
# deit-base_16xb64_in1k.py; the EMA copy averages the student and shares the
# frozen teacher.
_base_ = [
    '../_base_/distill/vitkd_deit3_deit_in1k.py',
    '../_base_/teachers/deit3-large-p16_in21k-pre_in1k.py',
]

model = dict(
    student=dict(
        backbone=dict(arch='deit-base', drop_path_rate=0.1),
        head=dict(in_channels=768)),
    teacher={{_base_.teacher}})
custom_hooks = [dict(type='EMAHook', momentum=4e-5, priority='ABOVE_NORMAL')]
