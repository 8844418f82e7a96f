# DKD on ImageNet: ResNet-34 -> ResNet-18 at mmpretrain's ResNet-18 recipe
# with the paper's ImageNet setting T=1, alpha=1, beta=0.5 and the student's
# CE at full weight. No warm-up: the official ImageNet config's one warm-up
# epoch gives the full weight from the first step (see README).
_base_ = ['../_base_/distill/resnet34_resnet18_in1k.py']

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
