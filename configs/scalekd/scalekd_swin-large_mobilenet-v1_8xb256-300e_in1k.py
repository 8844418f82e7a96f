# ScaleKD: Swin-L (ImageNet-21k -> 1k, 224 px) -> MobileNet-V1 (cls_kd's
# MobileNetV1, width 1.0), advanced recipe (300 epochs, Lamb, batch 2048 =
# 8 GPUs x 256, BCE; see the frame).
_base_ = [
    '../_base_/distill/scalekd_cnn-advanced_in1k.py',
    '../_base_/teachers/swin-large_in21k-pre_in1k.py',
]

model = dict(
    student=dict(
        backbone=dict(_delete_=True, type='MobileNetV1'),
        head=dict(in_channels=1024)),
    teacher={{_base_.teacher}},
    # layer3 (512x14x14) and layer4 (1024x7x7).
    taps=dict(
        s_s3=dict(path='backbone.layer3'), s_s4=dict(path='backbone.layer4')),
    connectors=dict(
        tpp={{_base_.scalekd_tpp_swin}},
        cap3=dict(type='CrossAttentionProjector', arch='mobilenet-v1-s3'),
        cap3_alt=dict(type='CrossAttentionProjector',
                      arch='mobilenet-v1-s3'),
        cap4=dict(type='CrossAttentionProjector', arch='mobilenet-v1-s4',
                  learnable_query=False),
        cap4_alt=dict(type='CrossAttentionProjector', arch='mobilenet-v1-s4',
                      learnable_query=False)),
    losses={{_base_.scalekd_losses}},
)
