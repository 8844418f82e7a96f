# DearKD on digits: the narrow ResNet-18 teacher (ResNet_CIFAR, 32x32 maps in
# layer1) into the 4x64 ViT with 4x4 patches (8x8 tokens) and a distillation
# token. The first two blocks use MHCA (convolution-like attention with
# relative-position logits); their patch tokens learn the teacher's layer2
# (32 x 16x16, pooled to 8x8) and layer3 (64 x 8x8) maps through 1x1
# aligners, with MSE; the distillation token learns the teacher's arg-max
# (DeiT hard). Distillation stops after epoch 24 of 30 (as 250 of 300 on
# ImageNet): the last 6 epochs train on labels alone and the teacher is no
# longer run.
# A scaled-down copy of the ImageNet wiring in
# configs/dearkd/dearkd_regnety-160_deit-tiny_4xb256_in1k.py.
_base_ = ['./deit_resnet18-c16_vit-4x64-p4-distilled_1xb64_digits.py']

distill_epochs = 24

model = dict(
    student=dict(
        backbone=dict(type='MHCADistilledVisionTransformer', mhca_layers=2)),
    taps=dict(
        s_block0=dict(path='backbone.layers.0', selector='patch_tokens'),
        s_block1=dict(path='backbone.layers.1', selector='patch_tokens'),
        t_layer2=dict(model='teacher', path='backbone.layer2'),
        t_layer3=dict(model='teacher', path='backbone.layer3')),
    connectors=dict(
        to_map=dict(type='TokensToMap'),
        to_grid=dict(type='MapPool', size=8),
        align0=dict(type='ConvConnector', in_channels=64, out_channels=32),
        align1=dict(type='ConvConnector', in_channels=64, out_channels=64)),
    losses=dict(
        loss_hidden=dict(
            type='FeatureMSELoss',
            reduction='mean',
            loss_weight=1.0,
            inputs=dict(
                preds=['align0(to_map(s_block0))', 'align1(to_map(s_block1))'],
                targets=['to_grid(t_layer2)', 'to_grid(t_layer3)']))),
    # Stage 1 distils (hidden + token terms, CE at 0.5 as in DeiT); stage 2
    # trains on labels alone, CE at full weight.
    stages=[
        dict(by='epoch', end=distill_epochs),
        dict(distill=False, student_loss_weight=1.0),
    ],
)
