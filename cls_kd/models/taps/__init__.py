from .selectors import (
    TAP_SELECTORS,
    SelectorContext,
    register_selector,
    token_grid,
)
from .tap import StopForward, Tap, TapSet, get_submodule

__all__ = [
    'TAP_SELECTORS', 'SelectorContext', 'register_selector', 'StopForward',
    'Tap', 'TapSet', 'get_submodule', 'token_grid'
]
