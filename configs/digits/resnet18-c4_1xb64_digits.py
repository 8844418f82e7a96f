# Digits CNN student of the ScaleKD experiment: the CIFAR-style ResNet-18 of
# the digits teacher at a quarter of its width (4 base channels): stage 3 is
# 16 x 8 x 8, stage 4 32 x 4 x 4 for 32x32 digits.
_base_ = ['./resnet18-c16_1xb64_digits.py']

model = dict(
    backbone=dict(stem_channels=4, base_channels=4),
    head=dict(in_channels=32))
# 15 epochs: the digits ScaleKD experiment (18 runs) fits in 20 CPU minutes.
train_cfg = dict(max_epochs=15)
