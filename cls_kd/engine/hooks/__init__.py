from .distill_schedule import StopDistillHook

__all__ = ['StopDistillHook']
