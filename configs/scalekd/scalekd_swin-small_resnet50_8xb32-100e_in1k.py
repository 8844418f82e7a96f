# ScaleKD: Swin-S (ImageNet-1k, 224 px) -> ResNet-50, traditional recipe
# (100 epochs, SGD lr 0.1, batch 256 = 8 GPUs x 32, SyncBN, teacher in train
# mode; see the frame). Published as
# configs/distillers/traditional_traning_strategy/
# swin-s_distill_res50_img_s3_s4.py, which differs from its Swin-B and Swin-L
# siblings: no logit KD (the cross-entropy keeps weight 1), no frequency
# term at stage 4 and fewer heads. Teacher-scaling row with the Swin-B and
# Swin-L configs.
_base_ = [
    '../_base_/distill/scalekd_resnet50-traditional_in1k.py',
    '../_base_/teachers/swin-small_in1k.py',
]

model = dict(
    teacher={{_base_.teacher}},
    # Stage 3 (1024x14x14) and stage 4 (2048x7x7).
    taps=dict(
        s_s3=dict(path='backbone.layer3'), s_s4=dict(path='backbone.layer4')),
    # Swin-S's widths: 384 at stage 3 (the TPP queries), 768 at the end.
    # The published heads: 3 at stage 3, 6 at stage 4 (128 channels each).
    connectors=dict(
        tpp={{_base_.scalekd_tpp_swin}},
        cap3=dict(arch='resnet50-s3', out_channels=384, num_heads=3),
        cap3_alt=dict(arch='resnet50-s3', out_channels=384, num_heads=3),
        cap4=dict(arch='resnet50-s4', out_channels=768, num_heads=6),
        cap4_alt=dict(arch='resnet50-s4', out_channels=768, num_heads=6)),
    # `kd = False` in the published config: no KD term, and the
    # cross-entropy is not halved. The KD term is kept at weight 0:
    # `model.student_loss_weight=0.5 model.losses.loss_kd.loss_weight=0.5`
    # gives its siblings' 0.5 CE + 0.5 KD.
    student_loss_weight=1.0,
    # The published stage-4 weights are alpha = [0.08, 0.00]: the frequency
    # view is computed with weight 0 (its projector gets no gradient).
    # `model.losses.loss_s4_alt.loss_weight=0.06` gives the paper's alpha_fr.
    losses=dict(
        loss_s4_alt=dict(loss_weight=0.0), loss_kd=dict(loss_weight=0.0)),
)
