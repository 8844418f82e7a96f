# NKD on ImageNet-1k: ResNet-34 -> ResNet-18. The authors'
# res34_distill_res18_img.py (yzd-v/cls_KD): mmpretrain's ResNet-18 recipe
# (8 GPUs x 32, SGD lr 0.1, 100 epochs), mmpretrain's ResNet-34 teacher, NKD's
# CNN setting T = 1, gamma = 1.5 added to the student's cross-entropy at
# weight 1.
_base_ = ['../_base_/distill/resnet34_resnet18_in1k.py']

model = dict(
    # The authors' distiller puts its teacher in eval mode once, when built;
    # mmcv's runner calls model.train() every epoch and that reaches it, so
    # the teacher's BatchNorm ran on batch statistics (cls_KD master,
    # mmcls/distillation/distillers/classification_distiller.py:32).
    teacher=dict(train_mode=True),
    losses=dict(
        loss_nkd=dict(
            type='NKDLoss',
            temperature=1.0,
            gamma=1.5,
            inputs=dict(
                logits_s='logits_s', logits_t='logits_t', labels='labels'))),
)
