# Digits student baseline for DearKD: the 4-block, 64-wide digits ViT with
# 4x4 patches, i.e. an 8x8 token grid (patch 8 gives 4x4, too small a grid
# for convolution-like attention to mean much), no teacher. 30 epochs: four
# times the tokens of patch 8 cost about four times as much per step.
_base_ = ['./vit-t4-p8_1xb64_digits.py']

model = dict(backbone=dict(patch_size=4))
train_cfg = dict(max_epochs=30)
