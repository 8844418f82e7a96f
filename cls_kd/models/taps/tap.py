"""Taps: named captures of module outputs through forward hooks."""
import difflib
from typing import Dict, List, Optional, Union

import torch.nn as nn

from .selectors import TAP_SELECTORS, SelectorContext

__all__ = ['Tap', 'TapSet', 'StopForward', 'get_submodule']


class StopForward(Exception):
    """Raised by the last tap of a teacher whose logits are not needed."""


def get_submodule(model: nn.Module, path: str, owner: str) -> nn.Module:
    """``model.get_submodule(path)`` with an error listing close names."""
    if path in ('', '.'):
        return model
    names = [name for name, _ in model.named_modules() if name]
    try:
        return model.get_submodule(path)
    except AttributeError:
        close = difflib.get_close_matches(path, names, n=5, cutoff=0.5)
        raise KeyError(
            f'{owner}: no module {path!r}. Closest existing: {close}; '
            f'top-level modules: '
            f'{[n for n, _ in model.named_children()]}.') from None


def _find_num_prefix_tokens(model: nn.Module, path: str) -> Optional[int]:
    """Prefix-token count of the nearest enclosing module defining one."""
    parts = path.split('.') if path else []
    for depth in range(len(parts), -1, -1):
        module = model.get_submodule('.'.join(parts[:depth]))
        for attr in ('num_extra_tokens', 'num_prefix_tokens'):
            value = getattr(module, attr, None)
            if isinstance(value, int):
                return value
    return None


class Tap:
    """A named capture of one module's output (or input).

    Args:
        name (str): The tap's name, used as a loss input.
        model (nn.Module): The model (student or a teacher) to tap.
        owner (str): Name of that model, for messages.
        path (str): Dotted module path, e.g. ``'backbone.layers.0'``.
        selector (str | dict): Selector name or ``dict(type=name, **opts)``
            (see ``TAP_SELECTORS``). Defaults to ``'output'``.
        capture (str): ``'output'`` or ``'input'`` (first positional input).
        num_prefix_tokens (int, optional): Overrides the prefix-token count
            found on the enclosing backbone.
    """

    def __init__(self,
                 name: str,
                 model: nn.Module,
                 owner: str,
                 path: str,
                 selector: Union[str, dict] = 'output',
                 capture: str = 'output',
                 num_prefix_tokens: Optional[int] = None):
        if capture not in ('output', 'input'):
            raise ValueError(f'Tap {name!r}: capture must be "output" or '
                             f'"input", got {capture!r}.')
        spec = dict(type=selector) if isinstance(selector, str) else dict(
            selector)
        selector_type = spec.pop('type', 'output')
        if selector_type not in TAP_SELECTORS:
            raise KeyError(
                f'Tap {name!r}: unknown selector {selector_type!r}; '
                f'known: {sorted(TAP_SELECTORS)}')
        self.name = name
        self.owner = owner
        self.path = path
        self.capture = capture
        self.module = get_submodule(model, path, f'Tap {name!r} on {owner}')
        self._select = TAP_SELECTORS[selector_type]
        self._select_options = spec
        self.selector_type = selector_type
        if num_prefix_tokens is None:
            num_prefix_tokens = _find_num_prefix_tokens(model, path)
        self.num_prefix_tokens = num_prefix_tokens
        self.store: Optional[dict] = None
        self.stop_after = False
        self._handle = None

    def __repr__(self):
        return (f'Tap({self.name!r}, {self.owner}:{self.path}, '
                f'{self.selector_type})')

    def install(self, store: dict) -> None:
        """Start writing captures into ``store`` (idempotent)."""
        self.store = store
        if self._handle is None:
            self._handle = self.module.register_forward_hook(self._hook)

    def remove(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _hook(self, module, args, output):
        store = self.store
        if store is None or not store.get('__enabled__', False):
            return
        value = args[0] if self.capture == 'input' else output
        ctx = SelectorContext(module, self.num_prefix_tokens, args)
        store[self.name] = self._select(value, ctx, **self._select_options)
        if self.stop_after:
            raise StopForward(self.name)


class TapSet:
    """The taps of one model (student or a teacher), sharing one store.

    The store is a plain dict, filled only while enabled (inside the
    distiller's loss computation), so evaluation and inference pay only a
    disabled-hook check per tapped module.
    """

    def __init__(self, taps: List[Tap]):
        self.taps = list(taps)
        self.store: Dict[str, object] = {'__enabled__': False}

    def __iter__(self):
        return iter(self.taps)

    def __len__(self):
        return len(self.taps)

    def install(self) -> None:
        for tap in self.taps:
            tap.install(self.store)

    def remove(self) -> None:
        for tap in self.taps:
            tap.remove()

    def enable(self) -> None:
        self.store.clear()
        self.store['__enabled__'] = True

    def collect(self) -> Dict[str, object]:
        """Disable capturing and hand over what was captured."""
        captured = {k: v for k, v in self.store.items() if k != '__enabled__'}
        self.store.clear()
        self.store['__enabled__'] = False
        return captured
