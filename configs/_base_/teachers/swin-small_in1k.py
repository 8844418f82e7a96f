# Teacher spec: Swin-S (window 7), ImageNet-1k, 224 px (mmpretrain's
# swin-small_3rdparty_in1k, converted from the official release; 83.21 top-1
# in mmpretrain's model zoo; no ImageNet-21k Swin-S is published there). Use
# as `teacher={{_base_.teacher}}`; a child config may override any key.
teacher = dict(
    config='mmpretrain::swin_transformer/swin-small_16xb64_in1k.py',
    checkpoint='https://download.openmmlab.com/mmclassification/v0/'
    'swin-transformer/convert/swin_small_patch4_window7_224-cc7a01c9.pth')
