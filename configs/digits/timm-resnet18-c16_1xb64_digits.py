# Digits teacher as a timm model: timm's ResNet-18 (ImageNet stem) at 16
# base channels, through mmpretrain's TimmClassifier, trained from scratch
# (pretrained=False: nothing is downloaded).
_base_ = ['./resnet18-c16_1xb64_digits.py']

model = dict(
    _delete_=True,
    type='TimmClassifier',
    model_name='resnet18',
    pretrained=False,
    num_classes=10,
    stem_width=16,
    channels=(16, 32, 64, 128),
    loss=dict(type='CrossEntropyLoss', loss_weight=1.0))
