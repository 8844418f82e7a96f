# ViTKD on ImageNet-1k: DeiT III-Small (ImageNet-21k pre-trained, 1k
# fine-tuned, 224 px) -> DeiT-Tiny. The authors' deit-s3_distill_deit-t_img.py
# (yzd-v/cls_KD) with its NKD switch off; recipe, lr curve, teacher mode and
# wiring in ../_base_/distill/vitkd_deit3_deit_in1k.py. Batch 1024 = 8 GPUs x
# 128 (theirs: 4 GPUs x 256, also 1024). Connector widths (192 -> 384) are
# measured by the build-time dry run.
_base_ = [
    '../_base_/distill/vitkd_deit3_deit_in1k.py',
    '../_base_/teachers/deit3-small-p16_in21k-pre_in1k.py',
]

model = dict(
    student=dict(backbone=dict(arch='deit-tiny'), head=dict(in_channels=192)),
    teacher={{_base_.teacher}})
