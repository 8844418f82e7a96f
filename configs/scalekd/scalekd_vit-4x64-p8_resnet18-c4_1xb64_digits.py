# ScaleKD on digits: ViT 4x64 (4x4 tokens of width 64) -> a
# quarter-width ResNet-18. The student's stage 3 (16 x 8 x 8) takes the TPP
# path: a projector with learnable 4x4 queries (the teacher's grid), then the
# teacher's own last 2 blocks + final norm with autograd (its class token
# prepended, dropped after); stage 4 (32 x 4 x 4) goes through a projector
# whose queries are that output. Loss weights: the paper's for Swin teachers
# (0.08 / 0.06 per view; with sum-MSE / B each position weighs what it
# weighs in the paper); 4 heads, gamma 5.
_base_ = [
    '../_base_/distill/vit-4x64-p8_resnet18-c4_digits.py',
    '../_base_/distill/scalekd.py',
]

model = dict(
    student_loss_weight=0.5,
    taps=dict(
        s_s3=dict(path='backbone.layer3'),
        s_s4=dict(path='backbone.layer4'),
        t_final=dict(model='teacher', path='backbone.ln1',
                     selector='patch_tokens')),
    connectors=dict(
        tpp={{_base_.scalekd_tpp_vit}},
        cap3=dict(type='CrossAttentionProjector', in_channels=16,
                  out_channels=64, num_heads=4, gamma=5.0, in_size=8,
                  query_size=4),
        cap3_alt=dict(type='CrossAttentionProjector', in_channels=16,
                      out_channels=64, num_heads=4, gamma=5.0, in_size=8,
                      query_size=4),
        cap4=dict(type='CrossAttentionProjector', in_channels=32,
                  out_channels=64, num_heads=4, gamma=5.0, in_size=4,
                  learnable_query=False),
        cap4_alt=dict(type='CrossAttentionProjector', in_channels=32,
                      out_channels=64, num_heads=4, gamma=5.0, in_size=4,
                      learnable_query=False)),
    losses={{_base_.scalekd_losses}},
)
