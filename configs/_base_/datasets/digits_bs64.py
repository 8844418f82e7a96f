# scikit-learn's handwritten digits as an ImageNet-style folder, written by
# `python tools/dataset_converters/digits.py` (1438 train / 359 val, 10
# classes), resized from 8x8 to 32x32.
dataset_type = 'CustomDataset'
data_root = 'data/digits'
num_classes = 10

data_preprocessor = dict(
    num_classes=num_classes,
    mean=[77.9, 77.9, 77.9],  # measured on the train split
    std=[95.9, 95.9, 95.9],
    to_rgb=False,
)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(32, 32), interpolation='bicubic'),
    dict(type='RandomCrop', crop_size=32, padding=3),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(32, 32), interpolation='bicubic'),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=64,
    num_workers=1,
    persistent_workers=True,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix='train',
        pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True),
)
val_dataloader = dict(
    batch_size=128,
    num_workers=1,
    persistent_workers=True,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix='val',
        pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
# The lr of the digits schedules is set for 1 process x 64 images:
# `tools/train.py --auto-scale-lr` scales it to the actual total batch.
auto_scale_lr = dict(base_batch_size=64)
