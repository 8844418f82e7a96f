# ScaleKD: Swin-L (ImageNet-21k -> 1k, 224 px) -> ResNet-50, traditional
# recipe (100 epochs, SGD lr 0.1, batch 256 = 8 GPUs x 32, SyncBN, teacher
# in train mode; see the frame). Published as
# configs/distillers/traditional_traning_strategy/
# swin-l_distill_res50_img_s3_s4.py; teacher-scaling row with the Swin-S and
# Swin-B configs.
_base_ = [
    '../_base_/distill/scalekd_resnet50-traditional_in1k.py',
    '../_base_/teachers/swin-large_in21k-pre_in1k.py',
]

model = dict(
    teacher={{_base_.teacher}},
    # Stage 3 (1024x14x14) and stage 4 (2048x7x7).
    taps=dict(
        s_s3=dict(path='backbone.layer3'), s_s4=dict(path='backbone.layer4')),
    # The ResNet-50 presets: 16 heads onto Swin-L's 768 channels at stage 3,
    # 24 onto its 1536 at the end, gamma 5 (as published).
    connectors=dict(
        tpp={{_base_.scalekd_tpp_swin}},
        cap3=dict(arch='resnet50-s3'), cap3_alt=dict(arch='resnet50-s3'),
        cap4=dict(arch='resnet50-s4'), cap4_alt=dict(arch='resnet50-s4')),
)
