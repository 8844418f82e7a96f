# ScaleKD: Swin-S (ImageNet-1k, 224 px) -> ResNet-50, traditional recipe
# (mmpretrain's ResNet-50: 100 epochs, SGD lr 0.1, batch 256 = 8 GPUs x 32;
# see the frame). Teacher-scaling row with the Swin-B and Swin-L configs.
# The teacher spec loads Swin-S weights (the published Swin-S config loads
# Swin-L's).
_base_ = [
    '../_base_/distill/scalekd_resnet50-traditional_in1k.py',
    '../_base_/teachers/swin-small_in1k.py',
]

model = dict(
    teacher={{_base_.teacher}},
    # Stage 3 (1024x14x14) and stage 4 (2048x7x7).
    taps=dict(
        s_s3=dict(path='backbone.layer3'), s_s4=dict(path='backbone.layer4')),
    # Swin-S: 384 channels at stage 3 (the TPP queries), 768 at the end;
    # the preset's 16 and 24 heads divide them.
    connectors=dict(
        tpp={{_base_.scalekd_tpp_swin}},
        cap3=dict(type='CrossAttentionProjector', arch='resnet50-s3',
                  out_channels=384),
        cap3_alt=dict(type='CrossAttentionProjector', arch='resnet50-s3',
                      out_channels=384),
        cap4=dict(type='CrossAttentionProjector', arch='resnet50-s4',
                  learnable_query=False, out_channels=768),
        cap4_alt=dict(type='CrossAttentionProjector', arch='resnet50-s4',
                      learnable_query=False, out_channels=768)),
    losses={{_base_.scalekd_losses}},
)
