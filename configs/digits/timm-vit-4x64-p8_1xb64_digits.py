# Digits student as a timm model: timm's ViT (vit_tiny_patch16_224's
# definition) at the digits ViT's size (4 blocks, width 64, 4 heads, MLP
# ratio 2, 8x8 patches on 32x32 inputs), through mmpretrain's
# TimmClassifier; no teacher. No weights are downloaded (pretrained=False).
# As a plain model: the config that tests a distilled timm student exported
# by tools/model_converters/extract_student.py.
_base_ = ['./vit-t4-p8_1xb64_digits.py']

model = dict(
    _delete_=True,
    type='TimmClassifier',
    model_name='vit_tiny_patch16_224',
    pretrained=False,
    num_classes=10,
    img_size=32,
    patch_size=8,
    embed_dim=64,
    depth=4,
    num_heads=4,
    mlp_ratio=2.0,
    loss=dict(type='CrossEntropyLoss', loss_weight=1.0))
