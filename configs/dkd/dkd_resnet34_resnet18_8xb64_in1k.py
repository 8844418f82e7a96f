# DKD on ImageNet-1k: ResNet-34 -> ResNet-18, the authors'
# configs/imagenet/r34_r18/dkd.yaml (megvii-research/mdistiller): T = 1,
# alpha = 1, beta = 0.5, the student's cross-entropy at weight 1, their
# recipe (batch 512, SGD lr 0.2, 100 epochs, steps at 30/60/90, torchvision's
# ResNet-34 teacher; ../_base_/distill/resnet34_resnet18_mdistiller_in1k.py).
# No warm-up of the DKD weight: the official config's WARMUP 1 gives the full
# weight from the first step (their factor min(epoch / 1, 1) counts epochs
# from 1; see README).
_base_ = ['../_base_/distill/resnet34_resnet18_mdistiller_in1k.py']

model = dict(
    losses=dict(
        loss_dkd=dict(
            type='DKDLoss',
            temperature=1.0,
            alpha=1.0,
            beta=0.5,
            inputs=dict(
                logits_s='logits_s', logits_t='logits_t', labels='labels'))),
)
