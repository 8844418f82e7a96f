# ScaleKD: Swin-L (ImageNet-21k -> 1k, 224 px) -> ResNet-50, traditional
# recipe (mmpretrain's ResNet-50: 100 epochs, SGD lr 0.1, batch 256 = 8 GPUs
# x 32; see the frame). Teacher-scaling row with the Swin-S and Swin-B
# configs.
_base_ = [
    '../_base_/distill/scalekd_resnet50-traditional_in1k.py',
    '../_base_/teachers/swin-large_in21k-pre_in1k.py',
]

model = dict(
    teacher={{_base_.teacher}},
    # Stage 3 (1024x14x14) and stage 4 (2048x7x7).
    taps=dict(
        s_s3=dict(path='backbone.layer3'), s_s4=dict(path='backbone.layer4')),
    connectors=dict(
        tpp={{_base_.scalekd_tpp_swin}},
        cap3=dict(type='CrossAttentionProjector', arch='resnet50-s3'),
        cap3_alt=dict(type='CrossAttentionProjector', arch='resnet50-s3'),
        cap4=dict(type='CrossAttentionProjector', arch='resnet50-s4',
                  learnable_query=False),
        cap4_alt=dict(type='CrossAttentionProjector', arch='resnet50-s4',
                      learnable_query=False)),
    losses={{_base_.scalekd_losses}},
)
