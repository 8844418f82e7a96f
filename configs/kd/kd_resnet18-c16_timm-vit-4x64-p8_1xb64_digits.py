# Hinton KD on digits into a timm student: the narrow ResNet-18 teacher ->
# timm's ViT at the digits ViT's size (configs/digits/
# timm-vit-4x64-p8_1xb64_digits.py), T = 4, alpha = 0.5, as
# kd_resnet18-c16_vit-t4-p8_1xb64_digits.py. A TimmClassifier student gives
# its logits and its supervised loss itself; its modules are tapped under
# `model.` (e.g. `model.blocks.3`, see docs/taps.md), and the exported
# student loads into the timm config above.
_base_ = ['./kd_resnet18-c16_vit-t4-p8_1xb64_digits.py']

model = dict(
    student=dict(
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
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
