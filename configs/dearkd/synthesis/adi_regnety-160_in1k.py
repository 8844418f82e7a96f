# ADI (Adaptive DeepInversion) from the RegNetY-16GF teacher: the
# DeepInversion setting (deepinversion_regnety-160_in1k.py) plus the
# competition term 1 - JS(teacher || student) at T = 3 with weight 0.2
# (NVlabs/DeepInversion: deepinversion.py and its README), against the
# competitor of DeepInversion's ImageNet script (imagenet_inversion.py: a
# pretrained ResNet-18; torchvision's there, mmpretrain's here, 69.90 top-1).
# The images train the paper's ADI comparison row,
# dearkd_regnety-160_deit-tiny_4xb256_datafree-adi.py:
#   torchrun --nproc_per_node 8 tools/synthesize.py \
#       configs/dearkd/synthesis/adi_regnety-160_in1k.py \
#       --out data/adi_in1k --launcher pytorch
_base_ = ['./deepinversion_regnety-160_in1k.py']

student = dict(
    config='mmpretrain::resnet/resnet18_8xb32_in1k.py',
    checkpoint='https://download.openmmlab.com/mmclassification/v0/resnet/'
    'resnet18_8xb32_in1k_20210831-fbbb1da6.pth')
