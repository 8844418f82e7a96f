# DearKD-B on ImageNet-1k: the DearKD-Ti wiring and recipe
# (dearkd_regnety-160_deit-tiny_4xb256_in1k.py) with mmpretrain's distilled
# DeiT-Base (arch deit-base, 768 wide), aligners from 768 channels and
# 16 GPUs x 64 (README_deit.md: 2 nodes x 8 GPUs at main.py's --batch-size
# 64); drop-path 0.1 as for every DeiT (inherited).
_base_ = ['./dearkd_regnety-160_deit-tiny_4xb256_in1k.py']

embed_dims = 768

model = dict(
    student=dict(
        backbone=dict(arch='deit-base'),
        head=dict(in_channels=embed_dims)),
    connectors=dict(
        align0=dict(in_channels=embed_dims),
        align1=dict(in_channels=embed_dims),
        align2=dict(in_channels=embed_dims),
        align3=dict(in_channels=embed_dims)),
)

train_dataloader = dict(batch_size=64)
