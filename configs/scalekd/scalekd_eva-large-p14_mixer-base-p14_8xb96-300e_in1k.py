# ScaleKD: EVA-L/14 (MIM ImageNet-21k, 21k -> 1k at 196 px, run at 224 px:
# 16x16 tokens) -> Mixer-B/14, advanced recipe (300 epochs, AdamW lr 7e-4,
# wd 0.067, batch 768 = 8 GPUs x 96, EMA 1e-4; see the frame), as
# deep-optimization/ScaleKD's configs/distillers/advanced_training_strategy/
# eva-l_distill_mixer_b_img_s3_s4.py and its student config
# configs/mlp_mixer/mlp-mixer-base-p14_64xb64_in1k.py (per GPU 24 on the
# README's 32 GPUs; its comment counts 8 nodes, 1536).
_base_ = [
    '../_base_/distill/scalekd_mixer-advanced_in1k.py',
    '../_base_/teachers/eva-large-p14_mim-in21k-pre_in1k-224px.py',
]

# The projectors' logit scale: the released config's 1.0. The paper states
# 0.2 for BEiT/EVA teachers; set `cap_gamma = 0.2` here to train that.
cap_gamma = 1.0
eva_cap = dict(in_size=16, gamma=cap_gamma, **_base_.scalekd_l14_projector)

model = dict(
    # Patch 14 (a 16x16 grid at 224 px, the teacher's); label smoothing 0.1
    # (_base_/models/mlp_mixer_base_patch14.py of the published code).
    student=dict(
        backbone=dict(patch_size=14),
        head=dict(loss=dict(
            _delete_=True, type='LabelSmoothLoss', label_smooth_val=0.1,
            mode='original'))),
    teacher={{_base_.teacher}},
    # Tokens (B, 256, 768) after block 10 and after block 12, before the
    # final norm (the published backbone's outputs 2 and 3). Teacher: the
    # last block's patch tokens (B, 256, 1024), before EVA's post-pooling
    # norm.
    taps=dict(
        s_s3=dict(path='backbone.layers.9'),
        s_s4=dict(path='backbone.layers.11'),
        t_final=dict(path='backbone.layers.23', selector='patch_tokens')),
    # TPP: the teacher's last 2 blocks. Projectors: the Mixer-B presets on a
    # 16x16 student grid, with EVA-L's width 1024, 16x16 queries and the
    # published EVA configs' default 8 heads.
    connectors=dict(
        tpp={{_base_.scalekd_tpp_eva}},
        cap3=dict(arch='mixer-b16-s3', **eva_cap),
        cap3_alt=dict(arch='mixer-b16-s3', **eva_cap),
        cap4=dict(arch='mixer-b16-s4', **eva_cap),
        cap4_alt=dict(arch='mixer-b16-s4', **eva_cap)),
    # alpha_sp = 0.016, alpha_fr = 0.008.
    losses={{_base_.scalekd_l14_weights}},
)

train_dataloader = dict(batch_size=96)
custom_hooks = [dict(type='EMAHook', momentum=1e-4, priority='ABOVE_NORMAL')]
