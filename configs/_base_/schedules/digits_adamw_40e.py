# A short AdamW + cosine schedule for the digits demo (CPU minutes): 2 warm-up
# epochs, then cosine to 1e-5.
optim_wrapper = dict(
    # Skips non-finite steps; optim_wrapper.skip_nonfinite=False: off.
    type='NonFiniteGuardOptimWrapper',
    # One group per distinct setting instead of one per parameter.
    constructor='MergedGroupsOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=2,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=2, eta_min=1e-5,
         convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=40, val_interval=10)
val_cfg = dict()
test_cfg = dict()
