# ScaleKD: Swin-L (ImageNet-21k -> 1k, 224 px) -> ResNet-50, advanced recipe
# (300 epochs, Lamb, batch 2048 = 8 GPUs x 256, BCE; see the frame), as
# deep-optimization/ScaleKD's configs/distillers/advanced_training_strategy/
# swin-l_distill_res50_img_s3_s4.py. Its student is ResNetV1d-50 (the
# frame's); `model.student.backbone.type='ResNet'` trains the plain
# ResNet-50 whose size the paper reports.
_base_ = [
    '../_base_/distill/scalekd_cnn-advanced_in1k.py',
    '../_base_/teachers/swin-large_in21k-pre_in1k.py',
]

model = dict(
    teacher={{_base_.teacher}},
    # Stage 3 (1024x14x14) and stage 4 (2048x7x7).
    taps=dict(
        s_s3=dict(path='backbone.layer3'), s_s4=dict(path='backbone.layer4')),
    connectors=dict(
        tpp={{_base_.scalekd_tpp_swin}},
        cap3=dict(arch='resnet50-s3'), cap3_alt=dict(arch='resnet50-s3'),
        cap4=dict(arch='resnet50-s4'), cap4_alt=dict(arch='resnet50-s4')),
)
