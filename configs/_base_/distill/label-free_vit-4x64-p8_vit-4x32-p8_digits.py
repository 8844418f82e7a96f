# The label-free digits frame with a ViT 4x64 teacher (patch 8, 4 heads,
# trained supervised by configs/digits/vit-t4-p8_1xb64_digits.py, 40
# epochs): cheaper to train than the DeiT III 6x128, so the AttnDistill
# digits experiment fits in minutes on two cores.
_base_ = ['./label-free_deit3-6x128-p8_vit-4x32-p8_digits.py']

model = dict(
    teacher=dict(
        config='{{fileDirname}}/../../digits/vit-t4-p8_1xb64_digits.py'))
