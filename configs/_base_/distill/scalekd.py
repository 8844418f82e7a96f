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
# Use: a distiller frame lists this file among its bases and puts
# connectors={{_base_.scalekd_projectors}} and losses={{_base_.scalekd_losses}}
# into its model (./scalekd_*_in1k.py); its configs then edit them by key:
#   model = dict(
#       connectors=dict(tpp={{_base_.scalekd_tpp_swin}},
#                       cap3=dict(arch='resnet50-s3'), ...),
#       losses={{_base_.scalekd_l14_weights}})  # BEiT/EVA-L/14 teachers
# Projector widths come from the presets (`arch`), from the config, or, left
# out, from the build-time dry run (not cap3's C_t: its output feeds the
# teacher part, which no loss compares with a target).
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
# The four projectors, two views per stage; configs merge their presets
# (or widths) into each by key.
scalekd_projectors = dict(
    cap3=dict(type='CrossAttentionProjector'),
    cap3_alt=dict(type='CrossAttentionProjector'),
    cap4=dict(type='CrossAttentionProjector', learnable_query=False),
    cap4_alt=dict(type='CrossAttentionProjector', learnable_query=False))
# BEiT/EVA-L/14 teachers' projectors: their width 1024, queries on their
# 16x16 grid and the published EVA configs' default 8 heads, merged into a
# student's presets: cap3=dict(arch=..., **_base_.scalekd_l14_projector).
scalekd_l14_projector = dict(out_channels=1024, num_heads=8, query_size=16)
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
# BEiT/EVA-L/14 teachers: alpha_sp = 0.016, alpha_fr = 0.008, merged into
# scalekd_losses by key (losses={{_base_.scalekd_l14_weights}}).
scalekd_l14_weights = dict(
    loss_s3=dict(loss_weight=0.016),
    loss_s3_alt=dict(loss_weight=0.008),
    loss_s4=dict(loss_weight=0.016),
    loss_s4_alt=dict(loss_weight=0.008))
