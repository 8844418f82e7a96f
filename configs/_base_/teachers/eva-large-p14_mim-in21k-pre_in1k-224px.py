# Teacher spec: EVA-L/14 (mmpretrain's BEiTViT), MIM pre-trained on
# ImageNet-21k, fine-tuned 21k -> 1k at 196 px (mmpretrain's
# beit-l-p14_eva-in21k-pre_3rdparty_in1k-196px, 88.58 top-1 at 196 px in its
# model zoo), built at 224 px: a 16 x 16 patch grid, as the published ScaleKD
# code runs it. The 14 x 14 position embedding of the checkpoint is resized
# to 16 x 16 when it is loaded (BEiTViT's load hook).
# Input normalisation: the published distiller feeds its teacher the
# student's input, normalised with ImageNet's mean / std
# (deep-optimization/ScaleKD@478a7db, mmcls/models/classifiers/
# distiller.py:142-145), not the CLIP mean / std the checkpoint was
# fine-tuned with; `data_preprocessor` says so. Set it to None to have the
# distiller renormalise to the teacher's own (CLIP) statistics.
# Use as `teacher={{_base_.teacher}}`.
teacher = dict(
    config='mmpretrain::eva/eva-l-p14_8xb16_in1k-196px.py',
    override=dict(backbone=dict(img_size=224)),
    checkpoint='https://download.openmmlab.com/mmclassification/v0/eva/'
    'eva-l-p14_mim-in21k-pre_3rdparty_in1k-196px_20221213-b730c7e7.pth',
    data_preprocessor=dict(
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True))
