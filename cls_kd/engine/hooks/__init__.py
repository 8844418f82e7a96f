from .checkpoint import SafeCheckpointHook
from .compile import CompileHook
from .distill_schedule import (
    DistillScheduleHook,
    StopDistillHook,
    add_schedule_hook,
)
from .sync_buffers import SyncStudentBuffersHook

__all__ = [
    'SafeCheckpointHook', 'CompileHook', 'DistillScheduleHook',
    'StopDistillHook', 'add_schedule_hook', 'SyncStudentBuffersHook'
]
