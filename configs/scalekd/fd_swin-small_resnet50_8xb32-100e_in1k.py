# Plain feature distillation (FD), the baseline of ScaleKD's ablations:
# Swin-S (ImageNet-1k, 224 px) -> ResNet-50 at the traditional recipe (the
# ScaleKD frame: 100 epochs, SGD lr 0.1, batch 256 = 8 GPUs x 32, SyncBN,
# teacher in train mode). The published repository ships the loss and its
# wiring (FDLoss in mmcls/models/dis_losses/fd.py, the `loss_fd` branch of
# the distiller), not this row's config: the student's last map through a
# 1x1 conv onto the teacher's width, mimicking the teacher's final feature
# with ScaleKD's spatial loss (channel-normalised sum-MSE / B), weight 0.08
# as the repository's own FD configs; cross-entropy at weight 1, no KD, as
# the published Swin-S ScaleKD config it is compared with. See
# configs/scalekd/README.md, "Traditional recipe".
_base_ = [
    '../_base_/distill/scalekd_resnet50-traditional_in1k.py',
    '../_base_/teachers/swin-small_in1k.py',
]

model = dict(
    teacher={{_base_.teacher}},
    # Stage 4 (2048x7x7), on the teacher's 7x7 grid.
    taps=dict(s_s4=dict(path='backbone.layer4')),
    # Its own projector and loss in place of the frame's ScaleKD ones.
    connectors=dict(
        _delete_=True,
        fd_proj=dict(type='ConvConnector', in_channels=2048,
                     out_channels=768, kernel_size=1),
        to_tokens=dict(type='MapToTokens')),
    student_loss_weight=1.0,
    losses=dict(
        _delete_=True,
        loss_fd=dict(
            type='DualViewMimicLoss', view='spatial', loss_weight=0.08,
            inputs=dict(preds='to_tokens(fd_proj(s_s4))',
                        targets='t_final'))),
)
