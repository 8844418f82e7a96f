# ScaleKD: Swin-L (ImageNet-21k -> 1k, 224 px) -> MobileNet-V1 (cls_kd's
# MobileNetV1, width 1.0), traditional recipe as published in
# configs/distillers/traditional_traning_strategy/
# swin-l_distill_mbv1_img_s3_s4.py: its frame is mmcls's
# mobilenet_v1/mobilenet_v1.py (8 GPUs x 32 = 256, SGD lr 0.1, momentum
# 0.9, wd 1e-4, cosine to 0 over 100 epochs, no warm-up; RandomResizedCrop +
# flip, no erasing), its student mobilenet_v1_refine.py's model (label
# smoothing 0.1), plain BatchNorm (`sync_bn=False`). Only the schedule, the
# student and its norm layers differ from the ResNet-50 frame.
_base_ = [
    '../_base_/distill/scalekd_resnet50-traditional_in1k.py',
    '../_base_/teachers/swin-large_in21k-pre_in1k.py',
]

model = dict(
    student=dict(
        backbone=dict(_delete_=True, type='MobileNetV1'),
        head=dict(
            in_channels=1024,
            loss=dict(
                type='LabelSmoothLoss', label_smooth_val=0.1,
                loss_weight=1.0))),
    teacher={{_base_.teacher}},
    # layer3 (512x14x14, after the 11th depthwise-separable block) and
    # layer4 (1024x7x7).
    taps=dict(
        s_s3=dict(path='backbone.layer3'), s_s4=dict(path='backbone.layer4')),
    # The MobileNet-V1 presets: 16 heads onto Swin-L's 768 channels at stage
    # 3, 24 onto its 1536 at the end, gamma 5 (as published).
    connectors=dict(
        tpp={{_base_.scalekd_tpp_swin}},
        cap3=dict(arch='mobilenet-v1-s3'), cap3_alt=dict(arch='mobilenet-v1-s3'),
        cap4=dict(arch='mobilenet-v1-s4'), cap4_alt=dict(arch='mobilenet-v1-s4')),
)
# mmcls's schedules/imagenet_bs256_coslr.py: cosine from lr 0.1 to 0.
param_scheduler = dict(
    _delete_=True, type='CosineAnnealingLR', T_max=100, by_epoch=True,
    begin=0, end=100)
