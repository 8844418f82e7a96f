# Digits teacher: a narrow CIFAR-style ResNet-18, trained from scratch.
_base_ = [
    '../_base_/models/digits_resnet_teacher.py',
    '../_base_/datasets/digits_bs64.py',
    '../_base_/schedules/digits_adamw_40e.py',
    '../_base_/default_runtime.py',
]
default_hooks = dict(logger=dict(interval=10))
# 15 epochs are enough for ~99% val top-1 and keep `make demo` short.
train_cfg = dict(max_epochs=15)
