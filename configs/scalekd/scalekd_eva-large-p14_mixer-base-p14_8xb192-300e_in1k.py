# ScaleKD: EVA-L/14 (MIM ImageNet-21k, 21k -> 1k at 196 px, run at 224 px:
# 16x16 tokens) -> Mixer-B/14, advanced recipe (300 epochs, AdamW lr 7e-4,
# wd 0.067, batch 1536 = 8 GPUs x 192; see the frame).
_base_ = [
    '../_base_/distill/scalekd_mixer-advanced_in1k.py',
    '../_base_/teachers/eva-large-p14_mim-in21k-pre_in1k-224px.py',
]

model = dict(
    # Patch 14: a 16x16 grid at 224 px, the teacher's.
    student=dict(backbone=dict(patch_size=14)),
    teacher={{_base_.teacher}},
    # Tokens (B, 256, 768) after block 9 of 12 and after the final norm.
    # Teacher: the last block's patch tokens (B, 256, 1024); EVA's BEiTViT
    # has no final norm before the pooling (final_norm=False, its norm
    # follows the pooling).
    taps=dict(
        s_s3=dict(path='backbone.layers.8'),
        s_s4=dict(path='backbone.ln1'),
        t_final=dict(path='backbone.layers.23', selector='patch_tokens')),
    # TPP: the teacher's last 2 blocks. Projectors: the Mixer-B presets on a
    # 16x16 student grid, with EVA-L's width 1024 and 16x16 queries, gamma
    # 0.2 (the paper's BEiT/EVA setting), 8 heads.
    connectors=dict(
        tpp={{_base_.scalekd_tpp_vit}},
        cap3=dict(
            type='CrossAttentionProjector', arch='mixer-b16-s3', in_size=16,
            out_channels=1024, num_heads=8, gamma=0.2, query_size=16),
        cap3_alt=dict(
            type='CrossAttentionProjector', arch='mixer-b16-s3', in_size=16,
            out_channels=1024, num_heads=8, gamma=0.2, query_size=16),
        cap4=dict(
            type='CrossAttentionProjector', arch='mixer-b16-s4', in_size=16,
            learnable_query=False, out_channels=1024, num_heads=8,
            gamma=0.2, query_size=16),
        cap4_alt=dict(
            type='CrossAttentionProjector', arch='mixer-b16-s4', in_size=16,
            learnable_query=False, out_channels=1024, num_heads=8,
            gamma=0.2, query_size=16)),
    # alpha_sp = 0.016, alpha_fr = 0.008.
    losses={{_base_.scalekd_losses_l14}},
)
