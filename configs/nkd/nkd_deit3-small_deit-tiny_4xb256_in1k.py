# NKD on ImageNet-1k: DeiT III-Small (ImageNet-21k pre-trained, 1k
# fine-tuned, 224 px) -> DeiT-Tiny. The authors' deit-s3_distill_deit-t_img.py
# (yzd-v/cls_KD) with its ViTKD switch off: NKD's ViT setting T = 1,
# gamma = 1, the student's cross-entropy at weight 1. The student's recipe is
# mmpretrain's DeiT-Tiny config (its DeiT-Small one with the Tiny arch: 4 GPUs
# x 256, AdamW lr 1e-3, 300 epochs, RandAugment, Mixup/CutMix, label
# smoothing, grad-clip 5), with the authors' lr curve and teacher mode, shared
# with the ViTKD configs (../_base_/distill/deit3_deit_in1k.py). The target class of a
# mixed image is the arg-max of its soft label, as in the authors' loss.
_base_ = [
    '../_base_/distill/deit3_deit_in1k.py',
    '../_base_/teachers/deit3-small-p16_in21k-pre_in1k.py',
]

model = dict(
    student=dict(backbone=dict(arch='deit-tiny'), head=dict(in_channels=192)),
    teacher={{_base_.teacher}},
    losses=dict(
        loss_nkd=dict(
            type='NKDLoss',
            temperature=1.0,
            gamma=1.0,
            inputs=dict(
                logits_s='logits_s', logits_t='logits_t', labels='labels'))),
)
