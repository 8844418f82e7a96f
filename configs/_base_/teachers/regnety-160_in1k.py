# Teacher spec: timm's RegNetY-16GF with DeiT's ImageNet-1k weights (the
# teacher of the DeiT paper). Use as `teacher={{_base_.teacher}}`.
teacher = dict(
    config=dict(
        type='TimmClassifier', model_name='regnety_160', pretrained=False),
    checkpoint='https://dl.fbaipublicfiles.com/deit/regnety_160-a5fe301d.pth')
