# ScaleKD: Swin-L (ImageNet-21k -> 1k, 224 px) -> ViT-B/16 (global average
# pooling, no class token), advanced recipe (300 epochs, AdamW lr 1e-3,
# batch 1024 = 8 GPUs x 128, EMA 1e-4; see the frame).
_base_ = [
    '../_base_/distill/scalekd_vit-advanced_in1k.py',
    '../_base_/teachers/swin-large_in21k-pre_in1k.py',
]

model = dict(
    teacher={{_base_.teacher}},
    # Tokens (B, 196, 768) after block 9 and after the last block (the
    # final norm comes after the pooling).
    taps=dict(
        s_s3=dict(path='backbone.layers.8'),
        s_s4=dict(path='backbone.layers.11')),
    connectors=dict(
        tpp={{_base_.scalekd_tpp_swin}},
        cap3=dict(type='CrossAttentionProjector', arch='vit-b16-s3'),
        cap3_alt=dict(type='CrossAttentionProjector', arch='vit-b16-s3'),
        cap4=dict(type='CrossAttentionProjector', arch='vit-b16-s4',
                  learnable_query=False),
        cap4_alt=dict(type='CrossAttentionProjector', arch='vit-b16-s4',
                      learnable_query=False)),
    losses={{_base_.scalekd_losses}},
)
