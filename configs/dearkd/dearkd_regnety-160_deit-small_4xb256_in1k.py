# DearKD-S on ImageNet-1k: the DearKD-Ti wiring and recipe
# (dearkd_regnety-160_deit-tiny_4xb256_in1k.py) with mmpretrain's distilled
# DeiT-Small (arch deit-small, 384 wide), aligners from 384 channels,
# 4 GPUs x 256 as for DeiT-Ti/S.
_base_ = ['./dearkd_regnety-160_deit-tiny_4xb256_in1k.py']

embed_dims = 384

model = dict(
    student=dict(
        backbone=dict(
            arch='deit-small',
        ),
        head=dict(in_channels=embed_dims)),
    connectors=dict(
        align0=dict(in_channels=embed_dims),
        align1=dict(in_channels=embed_dims),
        align2=dict(in_channels=embed_dims),
        align3=dict(in_channels=embed_dims)),
)
