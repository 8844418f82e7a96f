# AttnDistill: Mugs ViT-B/16 (12 heads) -> ViT-S/16 (6 heads) from scratch,
# label-free: the authors' mugs_teacher.sh (--aggregation --attn_T 10, no
# --interpolate): both rows become softmax(sum_h log a_h / tau), tau = 10.
# Teacher weights: Mugs' ViT-B/16 checkpoint (vit_base_backbone_400ep.pth)
# converted by
#   python tools/model_converters/dino_to_mmpretrain.py \
#       <mugs vit_base checkpoint> checkpoints/mugs_vit-base-p16.pth
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
            backbone=dict(type='VisionTransformer', arch='deit-base',
                          img_size=224, patch_size=16, out_type='cls_token'),
            neck=None,
            head=None),
        checkpoint='checkpoints/mugs_vit-base-p16.pth'),
    connectors=dict(
        proj=dict(type='AttnDistillProjector', in_channels=384,
                  out_channels=768)),
    losses=dict(loss_attn=dict(aggregate=True, tau=10.0)),
)
