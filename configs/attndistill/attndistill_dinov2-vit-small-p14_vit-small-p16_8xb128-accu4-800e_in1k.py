# AttnDistill from a DINOv2 teacher: timm's register-free DINOv2 ViT-S/14
# (`vit_small_patch14_dinov2`, 6 heads, at 224 px: a 16x16 patch grid) ->
# a ViT-S/16 (6 heads, 14x14 grid) from scratch, label-free, the recipe of
# the DINO ViT-S/8 row (no official run of this pair exists: the paper's
# teachers are DINO and Mugs). The teacher's 16x16 class-token attention
# row is resized bicubically to the student's 14x14 grid; no head
# aggregation (the student, projector and losses of that row's config).
# The teacher is a timm model through mmpretrain's
# TimmClassifier (no head: num_classes=0); its targets are the class token
# after its final norm (`model.norm`) and the last block's attention row.
# Teacher weights (a machine with internet; timm resamples the position
# embedding to 224 px):
#   python -c "import timm, torch; m = timm.create_model(\
#   'vit_small_patch14_dinov2.lvd142m', pretrained=True, img_size=224); \
#   torch.save(m.state_dict(), 'checkpoints/dinov2_vit-small-p14.pth')"
_base_ = ['./attndistill_dino-vit-small-p8_vit-small-p16_8xb128-accu4-800e_in1k.py']

model = dict(
    teacher=dict(
        config=dict(
            _delete_=True,
            type='TimmClassifier',
            model_name='vit_small_patch14_dinov2',
            pretrained=False,
            num_classes=0,
            img_size=224,
            data_preprocessor=dict(
                mean=[123.675, 116.28, 103.53],
                std=[58.395, 57.12, 57.375],
                to_rgb=True)),
        checkpoint='checkpoints/dinov2_vit-small-p14.pth'),
    taps=dict(
        t_cls=dict(model='teacher', path='model.norm', selector='cls_token',
                   num_prefix_tokens=1),
        t_attn=dict(model='teacher', path='model.blocks.11.attn')),
)
