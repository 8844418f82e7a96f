# ScaleKD: Swin-L (ImageNet-21k -> 1k, 224 px) -> MobileNet-V1 (cls_kd's
# MobileNetV1, width 1.0), advanced recipe, as deep-optimization/ScaleKD's
# configs/distillers/advanced_training_strategy/swin-l_distill_mbv1_img_s3_s4.py
# and its student config configs/mobilenet_v1/mobilenet_v1_refine.py (with
# _base_/datasets/imagenet_bs64_mbv1_224.py): 300 epochs, Lamb lr 2e-3,
# wd 0.004, no grad clip, label smoothing 0.1, no RandomErasing; batch
# 2048 = 8 GPUs x 256 (published: 32 x 64). Warm-up, cosine, RandAugment
# and evaluation as the frame.
_base_ = [
    '../_base_/distill/scalekd_cnn-advanced_in1k.py',
    '../_base_/teachers/swin-large_in21k-pre_in1k.py',
]

model = dict(
    student=dict(
        backbone=dict(_delete_=True, type='MobileNetV1'),
        head=dict(
            _delete_=True,
            type='LinearClsHead',
            num_classes=1000,
            in_channels=1024,
            loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1,
                      mode='original', loss_weight=1.0),
            topk=(1, 5))),
    teacher={{_base_.teacher}},
    # layer3 (512x14x14) and layer4 (1024x7x7).
    taps=dict(
        s_s3=dict(path='backbone.layer3'), s_s4=dict(path='backbone.layer4')),
    connectors=dict(
        tpp={{_base_.scalekd_tpp_swin}},
        cap3=dict(arch='mobilenet-v1-s3'), cap3_alt=dict(arch='mobilenet-v1-s3'),
        cap4=dict(arch='mobilenet-v1-s4'), cap4_alt=dict(arch='mobilenet-v1-s4')),
)

bgr_mean = [103.53, 116.28, 123.675]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandAugment', policies='timm_increasing', num_policies=2,
         total_level=8, magnitude_level=7, magnitude_std=0.5,
         hparams=dict(pad_val=[round(x) for x in bgr_mean],
                      interpolation='bicubic')),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
optim_wrapper = dict(
    optimizer=dict(lr=2e-3, weight_decay=0.004), clip_grad=None)
