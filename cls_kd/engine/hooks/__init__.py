from .checkpoint import SafeCheckpointHook
from .distill_schedule import (
    DistillScheduleHook,
    StopDistillHook,
    add_schedule_hook,
)

__all__ = [
    'SafeCheckpointHook', 'DistillScheduleHook', 'StopDistillHook',
    'add_schedule_hook'
]
