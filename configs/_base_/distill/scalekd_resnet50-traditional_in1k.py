# ScaleKD's frame for the paper's traditional recipe, as the published
# configs/distillers/traditional_traning_strategy/*_res50_* files train it:
# mmpretrain's resnet/resnet50_8xb32_in1k.py (8 GPUs x 32 = 256, SGD lr 0.1,
# momentum 0.9, wd 1e-4, 100 epochs, lr x 0.1 at epochs 30, 60 and 90;
# cross-entropy, RandomResizedCrop + flip, 256 -> 224 evaluation), the
# student's BatchNorms synchronised across GPUs and the teacher in train
# mode. A Swin teacher's final feature as target. Configs add the teacher,
# the student's taps, the teacher part and the projectors' presets; the
# losses of ./scalekd.py are here, for configs to edit by key. See
# configs/scalekd/README.md, "Traditional recipe".
_base_ = [
    # mmpretrain's resnet/resnet50_8xb32_in1k.py, its runtime cls_kd's.
    'mmpretrain::_base_/models/resnet50.py',
    'mmpretrain::_base_/datasets/imagenet_bs32.py',
    'mmpretrain::_base_/schedules/imagenet_bs256.py',
    '../in1k_runtime.py',
    './scalekd.py',
]

model = dict(
    _delete_=True,
    type='ClassificationDistiller',
    # mmpretrain's ResNet-50 (models/resnet50.py), SyncBN in the backbone:
    # the published distiller converts the student's BatchNorms
    # (`sync_bn=True` in the ResNet-50 configs), not the projectors'.
    student=dict(
        type='ImageClassifier',
        backbone=dict(
            type='ResNet',
            depth=50,
            num_stages=4,
            out_indices=(3, ),
            style='pytorch',
            norm_cfg=dict(type='SyncBN', requires_grad=True)),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(
            type='LinearClsHead',
            num_classes=1000,
            in_channels=2048,
            loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
            topk=(1, 5))),
    # Paper reproduction: the teacher follows the runner's train(), so its
    # drop-path is active. The published ClassificationDistiller calls
    # teacher.eval() once at build (mmcls/models/classifiers/distiller.py,
    # lines 54-58) and has no train() override; mmengine's train loop calls
    # model.train() every epoch (mmengine/runner/loops.py, line 113), which
    # reaches the teacher. Configs merge the teacher spec into this dict.
    teacher=dict(train_mode=True),
    # A Swin teacher's final feature: tokens (B, 49, C) after its final norm.
    taps=dict(t_final=dict(model='teacher', path='backbone.norm3')),
    # ScaleKD's projectors and losses (./scalekd.py): configs set the
    # projectors' presets and edit the losses by key.
    connectors={{_base_.scalekd_projectors}},
    losses={{_base_.scalekd_losses}},
    # 0.5 CE + 0.5 KD + the mimicking terms (without KD the cross-entropy
    # keeps weight 1).
    student_loss_weight=0.5,
)
# One optimizer group per distinct setting; SGD fused on CUDA.
optim_wrapper = dict(
    # Skips non-finite steps; optim_wrapper.skip_nonfinite=False: off.
    type='NonFiniteGuardOptimWrapper',
    constructor='MergedGroupsOptimWrapperConstructor')
