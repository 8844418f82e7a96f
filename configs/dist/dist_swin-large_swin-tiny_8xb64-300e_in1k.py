# DIST (Huang et al., NeurIPS 2022) on ScaleKD's Swin-L -> Swin-T row
# (advanced recipe, 300 epochs): the row's student, teacher and recipe,
# ScaleKD's projectors and losses replaced by DIST's loss. The DIST authors
# trained this pair in the official Swin code with DIST added (not
# released): see configs/dist/README.md.
_base_ = ['../scalekd/scalekd_swin-large_swin-tiny_8xb64-300e_in1k.py']

model = dict(
    # The official distiller keeps its teacher in eval mode (see
    # dist_swin-large_resnet50_8xb256-300e_in1k.py).
    teacher=dict(train_mode=False),
    taps=dict(_delete_=True),
    connectors=dict(_delete_=True),
    # L = 1 x CE + 2 x (1 x inter + 1 x intra), tau = 1 (the official
    # ImageNet setting, configs/strategies/distill/dist_b2.yaml:26-28).
    student_loss_weight=1.0,
    losses=dict(
        _delete_=True,
        loss_dist=dict(
            type='DISTLoss', temperature=1.0, beta=1.0, gamma=1.0,
            loss_weight=2.0,
            inputs=dict(logits_s='logits_s', logits_t='logits_t'))),
)
