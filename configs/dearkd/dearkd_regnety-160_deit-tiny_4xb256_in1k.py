# DearKD-Ti on ImageNet-1k: RegNetY-16GF (DeiT's teacher) -> DeiT-Tiny with a
# distillation token, the first 4 blocks with MHCA, at DeiT's recipe: the
# defaults of facebookresearch/deit main.py with README_deit.md's command
# (4 GPUs x 256, AdamW lr 5e-4 x 1024 / 512, 300 epochs, drop-path 0.1, no
# gradient clip, timm's warm-up + cosine, repeated augmentation, hard
# distillation), as the DeiT config this inherits trains it.
# tests/configs/test_dearkd_recipe.py pins every value against DeiT's code.
# The paper has no official code; every DearKD choice below is explained in
# README.md.
#
# Stage 1 (epochs 0-249): CE(class token) / 2 + CE(distillation token,
# teacher arg-max) / 2 + the hidden-state loss: the patch tokens of blocks
# 0-1 learn the teacher's stage-2 map (448 x 28x28, average-pooled to the
# 14x14 token grid) and those of blocks 2-3 its stage-3 map (1232 x 14x14),
# each through a 1x1 aligner, MSE. Stage 2 (epochs 250-299): labels only;
# the teacher is not run.
_base_ = ['../deit/deit_regnety-160_deit-tiny-distilled_4xb256_in1k.py']

embed_dims = 192
distill_epochs = 250
hidden_weight = 1.0

model = dict(
    student=dict(
        # DeiT's code's initialisation (timm's), MHCA's local init kept.
        backbone=dict(
            type='MHCADistilledVisionTransformer',
            mhca_layers=4,
            init_style='timm')),
    taps=dict(
        s_block0=dict(path='backbone.layers.0', selector='patch_tokens'),
        s_block1=dict(path='backbone.layers.1', selector='patch_tokens'),
        s_block2=dict(path='backbone.layers.2', selector='patch_tokens'),
        s_block3=dict(path='backbone.layers.3', selector='patch_tokens'),
        # timm's RegNet inside mmpretrain's TimmClassifier (`model`).
        t_stage2=dict(model='teacher', path='model.s2'),
        t_stage3=dict(model='teacher', path='model.s3')),
    connectors=dict(
        to_map=dict(type='TokensToMap'),
        to_grid=dict(type='MapPool', size=14),
        align0=dict(
            type='ConvConnector', in_channels=embed_dims, out_channels=448),
        align1=dict(
            type='ConvConnector', in_channels=embed_dims, out_channels=448),
        align2=dict(
            type='ConvConnector', in_channels=embed_dims, out_channels=1232),
        align3=dict(
            type='ConvConnector', in_channels=embed_dims,
            out_channels=1232)),
    losses=dict(
        loss_hidden=dict(
            type='FeatureMSELoss',
            reduction='mean',
            loss_weight=hidden_weight,
            inputs=dict(
                preds=[
                    'align0(to_map(s_block0))', 'align1(to_map(s_block1))',
                    'align2(to_map(s_block2))', 'align3(to_map(s_block3))'
                ],
                targets=[
                    'to_grid(t_stage2)', 'to_grid(t_stage2)',
                    'to_grid(t_stage3)', 'to_grid(t_stage3)'
                ]))),
    stages=[
        dict(by='epoch', end=distill_epochs),
        dict(distill=False, student_loss_weight=1.0),
    ],
)

