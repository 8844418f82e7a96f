# Digits student of the ViTKD experiment: the digits ViT at half the width
# (4 blocks, width 32, patch 8), no teacher.
_base_ = ['./vit-t4-p8_1xb64_digits.py']

model = dict(
    backbone=dict(arch=dict(embed_dims=32, feedforward_channels=64)),
    head=dict(in_channels=32))
