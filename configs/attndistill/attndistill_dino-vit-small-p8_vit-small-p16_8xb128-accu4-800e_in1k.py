# AttnDistill: DINO ViT-S/8 -> ViT-S/16 from scratch, label-free: the
# authors' dino_teacher.sh (--interpolate, no --aggregation): the teacher's
# 28x28 class-token attention row is resized bicubically to the student's
# 14x14 grid; 6 heads in both, no head aggregation.
# Teacher weights: DINO's dino_deitsmall8_pretrain.pth converted by
#   python tools/model_converters/dino_to_mmpretrain.py \
#       dino_deitsmall8_pretrain.pth checkpoints/dino_vit-small-p8.pth
_base_ = ['../_base_/distill/attndistill_in1k.py']

model = dict(
    student=dict(
        type='DINOVisionTransformer',
        arch='deit-small',
        img_size=224,
        patch_size=16,
        out_type='cls_token'),
    teacher=dict(
        config=dict(
            type='ImageClassifier',
            backbone=dict(type='VisionTransformer', arch='deit-small',
                          img_size=224, patch_size=8, out_type='cls_token'),
            neck=None,
            head=None),
        checkpoint='checkpoints/dino_vit-small-p8.pth'),
    connectors=dict(
        proj=dict(type='AttnDistillProjector', in_channels=384,
                  out_channels=384)),
    losses=dict(loss_attn=dict(aggregate=False)),
)
