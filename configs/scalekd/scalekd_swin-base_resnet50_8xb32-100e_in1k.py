# ScaleKD: Swin-B (ImageNet-21k -> 1k, 224 px) -> ResNet-50, traditional
# recipe (100 epochs, SGD lr 0.1, batch 256 = 8 GPUs x 32, SyncBN, teacher
# in train mode; see the frame). Published as
# configs/distillers/traditional_traning_strategy/
# swin-b_distill_res50_img_s3_s4.py; teacher-scaling row with the Swin-S and
# Swin-L configs.
_base_ = [
    '../_base_/distill/scalekd_resnet50-traditional_in1k.py',
    '../_base_/teachers/swin-base_in21k-pre_in1k.py',
]

model = dict(
    teacher={{_base_.teacher}},
    # Stage 3 (1024x14x14) and stage 4 (2048x7x7).
    taps=dict(
        s_s3=dict(path='backbone.layer3'), s_s4=dict(path='backbone.layer4')),
    # Swin-B's widths: 512 at stage 3 (the TPP queries), 1024 at the end.
    # The published heads: 8 at stage 3, 16 at stage 4 (64 channels each).
    # Its `softmax_scale=5.` (one number where the loss indexes one per
    # view) is gamma 5 for both views, the ResNet-50 presets' value.
    connectors=dict(
        tpp={{_base_.scalekd_tpp_swin}},
        cap3=dict(arch='resnet50-s3', out_channels=512, num_heads=8),
        cap3_alt=dict(arch='resnet50-s3', out_channels=512, num_heads=8),
        cap4=dict(arch='resnet50-s4', out_channels=1024, num_heads=16),
        cap4_alt=dict(arch='resnet50-s4', out_channels=1024, num_heads=16)),
)
