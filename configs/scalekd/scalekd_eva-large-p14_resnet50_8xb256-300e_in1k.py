# ScaleKD: EVA-L/14 (MIM ImageNet-21k, 21k -> 1k at 196 px, run at 224 px:
# 16x16 tokens) -> ResNet-50 (ResNetV1d-50, see the frame), advanced recipe
# (300 epochs, Lamb, batch 2048 = 8 GPUs x 256, BCE), as
# deep-optimization/ScaleKD's configs/distillers/advanced_training_strategy/
# eva-l_distill_res50_img_s3_s4.py.
_base_ = [
    '../_base_/distill/scalekd_cnn-advanced_in1k.py',
    '../_base_/teachers/eva-large-p14_mim-in21k-pre_in1k-224px.py',
]

eva_cap = dict(gamma=0.2, **_base_.scalekd_l14_projector)

model = dict(
    teacher={{_base_.teacher}},
    # Stage 3 (1024x14x14) and stage 4 (2048x7x7). Teacher: the last
    # block's patch tokens (B, 256, 1024); EVA's BEiTViT has no final norm
    # before the pooling (its norm follows the pooling).
    taps=dict(
        s_s3=dict(path='backbone.layer3'),
        s_s4=dict(path='backbone.layer4'),
        t_final=dict(path='backbone.layers.23', selector='patch_tokens')),
    # TPP: the teacher's last 2 blocks. Projectors: the ResNet-50 presets
    # with EVA-L's width 1024, 16x16 queries, the published EVA configs'
    # default 8 heads (../_base_/distill/scalekd.py) and gamma 0.2.
    connectors=dict(
        tpp={{_base_.scalekd_tpp_eva}},
        cap3=dict(arch='resnet50-s3', **eva_cap),
        cap3_alt=dict(arch='resnet50-s3', **eva_cap),
        cap4=dict(arch='resnet50-s4', **eva_cap),
        cap4_alt=dict(arch='resnet50-s4', **eva_cap)),
    # alpha_sp = 0.016, alpha_fr = 0.008.
    losses={{_base_.scalekd_l14_weights}},
)
