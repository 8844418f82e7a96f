from .distill_schedule import (
    DistillScheduleHook,
    StopDistillHook,
    add_schedule_hook,
)

__all__ = ['DistillScheduleHook', 'StopDistillHook', 'add_schedule_hook']
