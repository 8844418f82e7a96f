# Teacher spec: DeiT III-Large/16, ImageNet-21k pre-trained, 1k fine-tuned at
# 224 px (mmpretrain's checkpoint). Use as `teacher={{_base_.teacher}}`;
# a child config may override any key, e.g. the checkpoint.
teacher = dict(
    config='mmpretrain::deit3/deit3-large-p16_64xb64_in1k.py',
    # mmpretrain 1.2.0's DeiT3 block ignores ln2: run the block the weights
    # were trained as (cls_kd/models/backbones/deit3.py).
    override=dict(backbone=dict(type='FixedDeiT3')),
    checkpoint='https://download.openmmlab.com/mmclassification/v0/deit3/'
    'deit3-large-p16_in21k-pre_3rdparty_in1k_20221009-d8d27084.pth')
