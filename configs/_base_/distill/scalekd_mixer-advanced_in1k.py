# ScaleKD's frame for MLP-Mixer students at the paper's advanced recipe:
# Mixer-B/16 (the Mixer-S/16 and Mixer-B/14 configs change it), a Swin
# teacher's final feature as target (EVA configs replace it). Configs add the
# teacher, the student's taps, the connectors and the losses of
# ./scalekd.py. See configs/scalekd/README.md.
#   student  mmpretrain's Mixer-B/16 (_base_/models/mlp_mixer_base_patch16.py:
#            dropout 0.1, Kaiming patch embedding); no Mixup/CutMix.
#   data     8 GPUs x 192 = 1536 (the paper's batch); mmpretrain's DeiT/Swin
#            pipeline (_base_/datasets/imagenet_bs64_swin_224.py:
#            RandAugment magnitude 9, std 0.5, RandomErasing 0.25, bicubic
#            crops): mmpretrain's Mixer config is for evaluation only.
#   schedule AdamW lr 7e-4, wd 0.067 (the paper), none on norms, biases and
#            1-D parameters; 20 linear warm-up epochs, then cosine to 1e-5,
#            300 epochs (mmpretrain's DeiT/Swin schedule); grad-clip 1
#            (mmpretrain's Mixer config).
_base_ = [
    'mmpretrain::_base_/models/mlp_mixer_base_patch16.py',
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
    './scalekd.py',
]
default_scope = 'cls_kd'
# Crash-safe checkpoints (atomic writes, old ones removed last). The hook
# dict inherited from mmpretrain's runtime carries `_scope_='mmpretrain'`,
# where SafeCheckpointHook is not registered: give cls_kd's scope.
default_hooks = dict(
    checkpoint=dict(type='SafeCheckpointHook', _scope_='cls_kd'))

model = dict(
    _delete_=True,
    type='ClassificationDistiller',
    student={{_base_.model}},
    # A Swin teacher's final feature: tokens (B, 49, C) after its final norm.
    taps=dict(t_final=dict(model='teacher', path='backbone.norm3')),
    # 0.5 CE + 0.5 KD + the mimicking terms (configs add them).
    student_loss_weight=0.5,
)

train_dataloader = dict(batch_size=192)
# The recipe's paramwise_cfg (no decay on norms, biases, 1-D parameters)
# would make one optimizer group per parameter; merged, it needs a handful.
optim_wrapper = dict(
    optimizer=dict(lr=7e-4, weight_decay=0.067),
    clip_grad=dict(max_norm=1.0),
    constructor='MergedGroupsOptimWrapperConstructor')
auto_scale_lr = dict(base_batch_size=1536)
