# DeiT hard-label distillation on digits: narrow ResNet-18 teacher -> the
# tiny digits ViT with a distillation token and a second head.
# Train the teacher with configs/digits/resnet18-c16_1xb64_digits.py first
# and pass its checkpoint (see README).
_base_ = ['../digits/vit-t4-p8_1xb64_digits.py']

model = dict(
    _delete_=True,
    type='ClassificationDistiller',
    student=dict(
        type='ImageClassifier',
        backbone=dict(
            type='DistilledVisionTransformer',
            arch={{_base_.model.backbone.arch}},
            img_size=32,
            patch_size=8,
            drop_path_rate=0.0),
        neck=None,
        head=dict(
            type='DeiTDistillHead',
            num_classes=10,
            in_channels=64,
            loss=dict(type='CrossEntropyLoss', loss_weight=1.0))),
    teacher=dict(
        config='{{fileDirname}}/../digits/resnet18-c16_1xb64_digits.py',
        checkpoint=None),  # set model.teacher.checkpoint=<teacher .pth>
    taps=dict(
        dist_logits=dict(model='student', path='head.layers.head_dist')),
    student_loss_weight=0.5,
    losses=dict(
        loss_deit=dict(
            type='DeiTDistillLoss',
            mode='hard',
            loss_weight=0.5,
            inputs=dict(logits_s='dist_logits', logits_t='logits_t'))),
)

# Validation also reports the teacher's top-1 and the student's agreement
# with it (as in configs/_base_/distill/resnet18-c16_vit-t4-p8_digits.py).
val_evaluator = [
    dict(type='Accuracy', topk=(1, )),
    dict(type='TeacherAgreementMetric'),
]
test_evaluator = val_evaluator
