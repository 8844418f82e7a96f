# ScaleKD: Swin-B (ImageNet-21k -> 1k, 224 px) -> ResNet-50, traditional
# recipe (mmpretrain's ResNet-50: 100 epochs, SGD lr 0.1, batch 256 = 8 GPUs
# x 32; see the frame). Teacher-scaling row with the Swin-S and Swin-L
# configs.
_base_ = [
    '../_base_/distill/scalekd_resnet50-traditional_in1k.py',
    '../_base_/teachers/swin-base_in21k-pre_in1k.py',
]

model = dict(
    teacher={{_base_.teacher}},
    # Stage 3 (1024x14x14) and stage 4 (2048x7x7).
    taps=dict(
        s_s3=dict(path='backbone.layer3'), s_s4=dict(path='backbone.layer4')),
    # Swin-B: 512 channels at stage 3 (the TPP queries), 1024 at the end.
    # Stage 3 keeps the preset's 16 heads; 24 does not divide 1024: 16 heads
    # of 64 channels (the preset's head width for Swin-L, 1536 / 24; the
    # published Swin-B config also has 16).
    connectors=dict(
        tpp={{_base_.scalekd_tpp_swin}},
        cap3=dict(type='CrossAttentionProjector', arch='resnet50-s3',
                  out_channels=512),
        cap3_alt=dict(type='CrossAttentionProjector', arch='resnet50-s3',
                      out_channels=512),
        cap4=dict(type='CrossAttentionProjector', arch='resnet50-s4',
                  learnable_query=False, out_channels=1024, num_heads=16),
        cap4_alt=dict(type='CrossAttentionProjector', arch='resnet50-s4',
                      learnable_query=False, out_channels=1024,
                      num_heads=16)),
    losses={{_base_.scalekd_losses}},
)
