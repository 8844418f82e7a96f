_base_ = [
    '../_base_/models/digits_resnet_teacher.py',
    '../_base_/datasets/digits_bs64.py',
    '../_base_/schedules/digits_adamw_30e.py',
    '../_base_/default_runtime.py',
]
