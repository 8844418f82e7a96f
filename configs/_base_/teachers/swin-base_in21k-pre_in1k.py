# Teacher spec: Swin-B (window 7), ImageNet-21k pre-trained, 1k fine-tuned at
# 224 px (mmpretrain's swin-base_in21k-pre-3rdparty_in1k, converted from the
# official release; 85.16 top-1 in mmpretrain's model zoo). Use as
# `teacher={{_base_.teacher}}`; a child config may override any key.
teacher = dict(
    config='mmpretrain::swin_transformer/swin-base_16xb64_in1k.py',
    checkpoint='https://download.openmmlab.com/mmclassification/v0/'
    'swin-transformer/convert/'
    'swin_base_patch4_window7_224_22kto1k-f967f799.pth')
