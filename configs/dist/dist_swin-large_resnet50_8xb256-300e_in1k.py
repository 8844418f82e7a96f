# DIST (Huang et al., NeurIPS 2022) on ScaleKD's Swin-L -> ResNet-50 row
# (advanced recipe, 300 epochs): the row's student, teacher and recipe,
# ScaleKD's projectors and losses replaced by DIST's loss. The published
# DIST number for this pair came from DIST's own recipe (450 epochs,
# RMSprop): configs/dist/README.md lists what differs.
_base_ = ['../scalekd/scalekd_swin-large_resnet50_8xb256-300e_in1k.py']

model = dict(
    # The official distiller keeps its teacher in eval mode: it calls
    # teacher.eval() once and the training loop's model.train() reaches only
    # the student (hunto/image_classification_sota@d9662f7, the DIST_KD
    # submodule: lib/models/losses/kd_loss.py:44, tools/train.py:257).
    teacher=dict(train_mode=False),
    # DIST reads the logits only: no feature taps, no projectors.
    taps=dict(_delete_=True),
    connectors=dict(_delete_=True),
    # L = 1 x CE + 2 x (1 x inter + 1 x intra), tau = 1: `kd: dist`,
    # ori_loss_weight 1, kd_loss_weight 2 (configs/strategies/distill/
    # dist_b2.yaml:26-28), DIST(beta=1, gamma=1, tau=1) and the weighted
    # sum (lib/models/losses/kd_loss.py:29-30, 57).
    student_loss_weight=1.0,
    losses=dict(
        _delete_=True,
        loss_dist=dict(
            type='DISTLoss', temperature=1.0, beta=1.0, gamma=1.0,
            loss_weight=2.0,
            inputs=dict(logits_s='logits_s', logits_t='logits_t'))),
)
