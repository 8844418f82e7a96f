# AttnDistill: Mugs ViT-S/16 (6 heads) -> ViT-T/16 (3 heads) from scratch,
# label-free, head aggregation (tau = 10). The authors ship no script for
# this row: it is their mugs_teacher.sh with the ViT-S/16 teacher and their
# vit_tiny_patch16 student (models/dino_vit_student.py, whose projector ends
# at the teacher's 384 channels).
# Teacher weights: Mugs' ViT-S/16 checkpoint converted by
#   python tools/model_converters/dino_to_mmpretrain.py \
#       <mugs vit_small checkpoint> checkpoints/mugs_vit-small-p16.pth
_base_ = ['../_base_/distill/attndistill_in1k.py']

model = dict(
    student=dict(
        type='DINOVisionTransformer',
        arch='deit-tiny',
        img_size=224,
        patch_size=16,
        out_type='cls_token'),
    teacher=dict(
        config=dict(
            type='ImageClassifier',
            backbone=dict(type='VisionTransformer', arch='deit-small',
                          img_size=224, patch_size=16, out_type='cls_token'),
            neck=None,
            head=None),
        checkpoint='checkpoints/mugs_vit-small-p16.pth'),
    connectors=dict(
        proj=dict(type='AttnDistillProjector', in_channels=192,
                  out_channels=384)),
    losses=dict(loss_attn=dict(aggregate=True, tau=10.0)),
)
