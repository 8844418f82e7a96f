# ScaleKD's wiring (Fan et al., NeurIPS 2024), shared by configs/scalekd/.
# Configs pick the student taps `s_s3` (its stage-3 output) and `s_s4` (its
# last feature), the teacher tap `t_final` (the teacher's final feature after
# its final norm), the teacher-part runner of `tpp` and the projectors'
# presets; see configs/scalekd/README.md.
#
# Per view (spatial `cap3`/`cap4`, frequency `cap3_alt`/`cap4_alt`):
#   TPP path:  stage-3 student map -> cap3 (learnable queries on the
#              teacher's stage-3 grid) -> the teacher's own frozen last stage
#              with autograd (`tpp`) -> mimics t_final           (loss_s3)
#   stage 4:   stage-4 student map -> cap4 with the TPP output as its
#              queries (not detached) -> mimics t_final          (loss_s4)
# Total: 0.5 CE + 0.5 KD (T = 1) + the four mimicking terms.
# Use: `_base_ = [<distiller frame>, '../_base_/distill/scalekd.py']`, then
# model=dict(student_loss_weight=0.5, taps=..., losses={{_base_.scalekd_losses}}
# (Swin teachers) or {{_base_.scalekd_losses_l14}} (BEiT/EVA-L/14 teachers),
# connectors=dict(tpp={{_base_.scalekd_tpp_swin}} or {{_base_.scalekd_tpp_vit}},
# cap3=..., cap3_alt=..., cap4=..., cap4_alt=...)) with the projectors'
# presets or widths written out (a `{{_base_.x}}` value cannot be edited in
# the child, so the projectors are spelled per config).
#
# Teacher mode. The published distiller (deep-optimization/ScaleKD@478a7db,
# mmcls/models/classifiers/distiller.py:54-58) calls `teacher.eval()` once
# when it is built and keeps the teacher as a sub-module without overriding
# `train()`, so the runner's `model.train()` at every epoch puts the teacher
# in train mode: its drop-path is active in the targets, the logits and the
# TPP stage. The paper configs reproduce this with the teacher spec's
# `train_mode=True` (set in the recipe frames); cls_kd's default for any
# other config is a teacher in eval mode.
scalekd_tpp_swin = dict(
    type='TeacherPart', runner=dict(type='SwinStageRunner', stage=-1))
# ViT teachers: the last 2 blocks and the final norm (if the backbone has
# one); the projector's output gets the teacher's own (initial, frozen)
# class token prepended, dropped after.
scalekd_tpp_vit = dict(
    type='TeacherPart',
    runner=dict(type='ViTBlocksRunner', start=-2, add_prefix=True))
# EVA-L/14 teacher of the paper configs: its last 2 blocks on the projected
# patch tokens alone, no class token and no norm (BEiTViT normalises after
# pooling), as the published `BEiT.forward_specific_stage(x, 4)`
# (mmcls/models/backbones/beit.py:533-554 at 478a7db).
scalekd_tpp_eva = dict(
    type='TeacherPart',
    runner=dict(type='ViTBlocksRunner', start=-2, add_prefix=False))
scalekd_losses = dict(
    loss_s3=dict(
        type='DualViewMimicLoss', view='spatial', loss_weight=0.08,
        inputs=dict(preds='tpp(cap3(s_s3))', targets='t_final')),
    loss_s3_alt=dict(
        type='DualViewMimicLoss', view='frequency', loss_weight=0.06,
        inputs=dict(preds='tpp(cap3_alt(s_s3))', targets='t_final')),
    loss_s4=dict(
        type='DualViewMimicLoss', view='spatial', loss_weight=0.08,
        inputs=dict(preds='cap4(s_s4, tpp(cap3(s_s3)))', targets='t_final')),
    loss_s4_alt=dict(
        type='DualViewMimicLoss', view='frequency', loss_weight=0.06,
        inputs=dict(preds='cap4_alt(s_s4, tpp(cap3_alt(s_s3)))',
                    targets='t_final')),
    # The published code's KD is the cross-entropy with the teacher's soft
    # labels: same gradients as the KL form, comparable logged values.
    loss_kd=dict(
        type='KDLoss', temperature=1.0, loss_weight=0.5, form='soft_ce',
        inputs=dict(logits_s='logits_s', logits_t='logits_t')),
)
# BEiT/EVA-L/14 teachers: alpha_sp = 0.016, alpha_fr = 0.008.
scalekd_losses_l14 = dict(
    loss_s3=dict(
        type='DualViewMimicLoss', view='spatial', loss_weight=0.016,
        inputs=dict(preds='tpp(cap3(s_s3))', targets='t_final')),
    loss_s3_alt=dict(
        type='DualViewMimicLoss', view='frequency', loss_weight=0.008,
        inputs=dict(preds='tpp(cap3_alt(s_s3))', targets='t_final')),
    loss_s4=dict(
        type='DualViewMimicLoss', view='spatial', loss_weight=0.016,
        inputs=dict(preds='cap4(s_s4, tpp(cap3(s_s3)))', targets='t_final')),
    loss_s4_alt=dict(
        type='DualViewMimicLoss', view='frequency', loss_weight=0.008,
        inputs=dict(preds='cap4_alt(s_s4, tpp(cap3_alt(s_s3)))',
                    targets='t_final')),
    loss_kd=scalekd_losses['loss_kd'],
)
