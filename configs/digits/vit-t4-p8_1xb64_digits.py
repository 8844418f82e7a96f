# Digits student baseline: a 4-block, 64-wide ViT (patch 8), no teacher.
_base_ = [
    '../_base_/models/digits_vit_student.py',
    '../_base_/datasets/digits_bs64.py',
    '../_base_/schedules/digits_adamw_40e.py',
    '../_base_/default_runtime.py',
]
default_hooks = dict(logger=dict(interval=10))
