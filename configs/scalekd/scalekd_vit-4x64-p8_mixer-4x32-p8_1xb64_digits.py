# ScaleKD on digits: ViT 4x64 (4x4 tokens of width 64) -> an
# MLP-Mixer 4x32 (4x4 tokens of width 32). Stage 3 = the tokens after layer
# 3 of 4 (the TPP path: projector with learnable 4x4 queries, then the
# teacher's last 2 blocks + final norm with autograd); stage 4 = the tokens
# after the final norm (projector queried by the TPP output). Loss weights,
# heads and gamma as in the CNN config.
_base_ = [
    '../_base_/distill/vit-4x64-p8_mixer-4x32-p8_digits.py',
    '../_base_/distill/scalekd.py',
]

model = dict(
    student_loss_weight=0.5,
    taps=dict(
        s_s3=dict(path='backbone.layers.2'),
        s_s4=dict(path='backbone.ln1'),
        t_final=dict(model='teacher', path='backbone.ln1',
                     selector='patch_tokens')),
    connectors=dict(
        tpp={{_base_.scalekd_tpp_vit}},
        cap3=dict(type='CrossAttentionProjector', in_channels=32,
                  out_channels=64, num_heads=4, gamma=5.0, in_size=4,
                  query_size=4),
        cap3_alt=dict(type='CrossAttentionProjector', in_channels=32,
                      out_channels=64, num_heads=4, gamma=5.0, in_size=4,
                      query_size=4),
        cap4=dict(type='CrossAttentionProjector', in_channels=32,
                  out_channels=64, num_heads=4, gamma=5.0, in_size=4,
                  learnable_query=False),
        cap4_alt=dict(type='CrossAttentionProjector', in_channels=32,
                      out_channels=64, num_heads=4, gamma=5.0, in_size=4,
                      learnable_query=False)),
    losses={{_base_.scalekd_losses}},
)
