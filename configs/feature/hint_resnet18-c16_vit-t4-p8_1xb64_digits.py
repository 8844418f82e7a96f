# FitNets hint from a CNN map into ViT tokens, on digits, no Python: the
# student's block-1 patch tokens (4x4 grid, width 64) become a map
# (TokensToMap), the teacher's layer3 map (64 x 8 x 8) is average-pooled to
# the student's grid (MapPool), and HintLoss regresses the student map onto
# it with its own 1x1 regressor. CE keeps the student's labels.
_base_ = ['../_base_/distill/resnet18-c16_vit-t4-p8_digits.py']

model = dict(
    taps=dict(
        s_block1=dict(path='backbone.layers.1', selector='patch_tokens'),
        t_layer3=dict(model='teacher', path='backbone.layer3')),
    connectors=dict(
        to_map=dict(type='TokensToMap'),
        pool=dict(type='MapPool', size=4)),
    losses=dict(
        loss_hint=dict(
            type='HintLoss',
            in_channels=64,
            out_channels=64,
            loss_weight=1.0,
            inputs=dict(preds='to_map(s_block1)', targets='pool(t_layer3)'))),
)
