# cls_kd's runtime on mmpretrain's ImageNet runtime (its
# _base_/default_runtime.py: a log line every 100 iterations, a checkpoint
# every epoch, no fixed seed), in cls_kd's scope, with crash-safe checkpoints
# (atomic writes, old ones removed last) and every rank's BatchNorm
# statistics averaged before validation and saving. List it among a config's
# bases in place of 'mmpretrain::_base_/default_runtime.py'. A config built
# on a whole mmpretrain recipe (which brings that runtime itself) restates
# these lines: mmengine refuses a key that two bases set.
_base_ = ['mmpretrain::_base_/default_runtime.py']
default_scope = 'cls_kd'
# The hook dicts inherited from mmpretrain carry its scope, where these
# hooks are not registered: give cls_kd's.
default_hooks = dict(
    checkpoint=dict(type='SafeCheckpointHook', _scope_='cls_kd'),
    sync_buffers=dict(type='SyncStudentBuffersHook', _scope_='cls_kd'))
