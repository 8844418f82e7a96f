# The distiller frame of the KD and DKD ImageNet configs: the DKD authors'
# ResNet-34 -> ResNet-18 runs (megvii-research/mdistiller,
# configs/imagenet/r34_r18/{kd,dkd}.yaml with its trainer, data and models),
# on the ResNet-18 frame of ./resnet34_resnet18_in1k.py where they differ.
# tests/configs/test_logit_recipe.py cites the lines. Method configs add
# `losses` (and the student's loss weight).
_base_ = ['./resnet34_resnet18_in1k.py']

model = dict(
    # mdistiller's ResNet-18 starts as torchvision's: no zero-init of each
    # block's last BatchNorm, PyTorch's default init of the classifier.
    student=dict(
        backbone=dict(zero_init_residual=False), head=dict(init_cfg=None)),
    # torchvision's ResNet-34 weights (73.31 top-1), the file mdistiller
    # downloads; timm's resnet34 has torchvision's layers and key names.
    teacher=dict(
        _delete_=True,
        config=dict(
            type='TimmClassifier', model_name='resnet34', pretrained=False),
        checkpoint='https://download.pytorch.org/models/'
        'resnet34-333f7ec4.pth'),
)

# SOLVER.BATCH_SIZE 512 at LR 0.2, one process over all GPUs: 8 GPUs x 64.
# torchvision's transforms resize with PIL (bilinear, antialiased when
# shrinking); mmpretrain's default backend is OpenCV.
train_dataloader = dict(
    batch_size=64,
    dataset=dict(pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='RandomResizedCrop', scale=224, backend='pillow'),
        dict(type='RandomFlip', prob=0.5, direction='horizontal'),
        dict(type='PackInputs'),
    ]))
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short', backend='pillow'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
optim_wrapper = dict(optimizer=dict(lr=0.2))
auto_scale_lr = dict(base_batch_size=512)
