"""Taps: named captures of module outputs through forward hooks."""
import difflib
import inspect
import re
from contextlib import contextmanager
from functools import partial
from typing import Dict, List, Optional, Tuple, Union

import torch.nn as nn

from .selectors import TAP_SELECTORS, SelectorContext

__all__ = ['Tap', 'TapSet', 'StopForward', 'get_submodule']

Path = Union[str, List[str], dict]


class StopForward(Exception):
    """Raised after the last tapped module of a teacher whose output is not
    needed (see :meth:`TapSet.stop_after_last_fired`)."""


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


def _match_pattern(model: nn.Module, spec: dict, who: str) -> List[str]:
    """Names of the submodules whose dotted name fully matches
    ``spec['pattern']`` and, if ``spec['type']`` is given, that have a class
    of that name in their MRO; in ``named_modules()`` order."""
    spec = dict(spec)
    pattern, type_name = spec.pop('pattern', None), spec.pop('type', None)
    if not isinstance(pattern, str) or spec:
        raise ValueError(f'{who}: a path dict takes pattern=<regex> and '
                         f'optionally type=<class name>, got {spec or None} '
                         f'besides pattern={pattern!r}.')
    try:
        regex = re.compile(pattern)
    except re.error as e:
        raise ValueError(f'{who}: bad pattern {pattern!r}: {e}.') from None
    named = [(n, m) for n, m in model.named_modules() if n]
    by_name = [(n, m) for n, m in named if regex.fullmatch(n)]
    if not by_name:
        close = difflib.get_close_matches(
            pattern.replace('\\', ''), [n for n, _ in named], n=5, cutoff=0.5)
        raise KeyError(f'{who}: no module name fully matches {pattern!r}. '
                       f'Closest existing: {close}.')
    if type_name is None:
        return [n for n, _ in by_name]
    matched = [
        n for n, m in by_name
        if any(c.__name__ == type_name for c in type(m).__mro__)
    ]
    if not matched:
        classes = {c.__name__ for _, m in by_name for c in type(m).__mro__}
        close = difflib.get_close_matches(type_name, classes, n=5, cutoff=0.5)
        raise KeyError(f'{who}: {len(by_name)} modules match {pattern!r} but '
                       f'none is a {type_name}. Close class names: {close}.')
    return matched


def _find_num_prefix_tokens(model: nn.Module, path: str) -> Optional[int]:
    """Prefix-token count of the nearest enclosing module defining one."""
    parts = path.split('.') if path not in ('', '.') else []
    for depth in range(len(parts), -1, -1):
        module = model.get_submodule('.'.join(parts[:depth]))
        for attr in ('num_extra_tokens', 'num_prefix_tokens'):
            value = getattr(module, attr, None)
            if isinstance(value, int):
                return value
    return None


class Tap:
    """A named capture of the output (or input) of one or several modules.

    Args:
        name (str): The tap's name, used as a loss input.
        model (nn.Module): The model (student or a teacher) to tap.
        owner (str): Name of that model, for messages.
        path (str | list[str] | dict): A dotted module path, e.g.
            ``'backbone.layers.0'``, for a single value; a list of paths, or
            ``dict(pattern=<regex>, type=<class name, optional>)`` matching
            submodules by their full dotted name and by any class name in
            their MRO (e.g. ``dict(pattern=r'.*', type='_BatchNorm')``), for
            a list of values in list / ``named_modules()`` order.
        selector (str | dict): Selector name or ``dict(type=name, **opts)``
            (see ``TAP_SELECTORS``). Defaults to ``'output'``.
        capture (str): ``'output'`` or ``'input'`` (first positional input).
        num_prefix_tokens (int, optional): Overrides the prefix-token count
            found on the enclosing backbone of each module.

    Besides ``name``, ``owner`` and ``path`` (as given), a tap has
    ``paths``, ``modules`` and ``num_prefix_tokens`` (lists, one entry per
    tapped module) and ``multi`` (whether it yields a list).
    """

    def __init__(self,
                 name: str,
                 model: nn.Module,
                 owner: str,
                 path: Path,
                 selector: Union[str, dict] = 'output',
                 capture: str = 'output',
                 num_prefix_tokens: Optional[int] = None):
        who = f'Tap {name!r} on {owner}'
        if capture not in ('output', 'input'):
            raise ValueError(f'{who}: capture must be "output" or "input", '
                             f'got {capture!r}.')
        if isinstance(path, dict):
            paths = _match_pattern(model, path, who)
        elif isinstance(path, (list, tuple)) and path and all(
                isinstance(p, str) for p in path):
            paths = list(path)
        elif isinstance(path, str):
            paths = [path]
        else:
            raise ValueError(f'{who}: path must be a str, a non-empty list '
                             f'of str or dict(pattern=...), got {path!r}.')
        self.name = name
        self.owner = owner
        self.path = path
        self.paths = paths
        self.multi = not isinstance(path, str)
        self.capture = capture
        self.modules = [get_submodule(model, p, who) for p in paths]
        self.num_prefix_tokens = [
            num_prefix_tokens if num_prefix_tokens is not None else
            _find_num_prefix_tokens(model, p) for p in paths
        ]
        spec = dict(type=selector) if isinstance(selector, str) else dict(
            selector)
        self.selector_type = spec.pop('type', 'output')
        self._select = TAP_SELECTORS.get(self.selector_type)
        if self._select is None:
            raise KeyError(f'{who}: unknown selector {self.selector_type!r}; '
                           f'known: {sorted(TAP_SELECTORS.module_dict)}')
        try:
            inspect.signature(self._select).bind(None, None, **spec)
        except TypeError as e:
            raise TypeError(f'{who}: selector {self.selector_type!r} does not '
                            f'take options {sorted(spec)}: {e}.') from None
        self._select_options = spec
        check = getattr(self._select, 'check', None)
        if check is not None:
            for module_path, module in zip(paths, self.modules):
                try:
                    check(module, **spec)
                except (TypeError, ValueError) as e:
                    raise type(e)(
                        f'{who}, module {module_path!r}: {e}') from None

    def __repr__(self):
        return (f'Tap({self.name!r}, {self.owner}:{self.path}, '
                f'{self.selector_type})')

    def select(self, index: int, module: nn.Module, args: tuple,
               kwargs: dict, output):
        """What the tap keeps of one call of its module number ``index``."""
        value = args[0] if self.capture == 'input' else output
        ctx = SelectorContext(module, self.num_prefix_tokens[index], args,
                              kwargs)
        return self._select(value, ctx, **self._select_options)


class TapSet:
    """The taps of one model (student or a teacher), sharing one store.

    Hooks are put on the modules once (:meth:`install`); they write into the
    store, a plain dict, only while enabled (inside the distiller's loss
    computation), so evaluation and inference pay only a disabled-hook check
    per tapped module. A multi-module tap stores ``{index: value}`` until
    :meth:`collect` turns it into a list.

    :meth:`recording` is the usual way in: a context manager that enables,
    collects into the dict it yields, and ends a stopped forward.

    A recorded run (``enable(record=True)``) lists the ``(tap name, module
    index)`` of every hook call in :attr:`fired`, from which
    :meth:`unfired` and :meth:`stop_after_last_fired` work.

    Args:
        taps (list[Tap]): The taps, all on the same model.
    """

    def __init__(self, taps: List[Tap]):
        self.taps = list(taps)
        self.store: Dict[str, object] = {}
        self.enabled = False
        self.keep_order = False  # fill `fired` (a recorded run)
        self.fired: List[Tuple[str, int]] = []
        self._handles = []
        # (tap name, module index) of the armed hook and how many of its
        # calls the forward makes before it stops (for reused modules).
        self._stop_at: Optional[Tuple[str, int]] = None
        self._stop_calls = 0
        self._calls_left = 0

    def __iter__(self):
        return iter(self.taps)

    def __len__(self):
        return len(self.taps)

    def install(self) -> None:
        """Put the forward hooks on the tapped modules (idempotent)."""
        if self._handles:
            return
        for tap in self.taps:
            for index, module in enumerate(tap.modules):
                self._handles.append(
                    module.register_forward_hook(
                        partial(self._hook, tap, index), with_kwargs=True))

    def remove(self) -> None:
        """Remove the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _hook(self, tap: Tap, index: int, module, args, kwargs, output):
        if not self.enabled:
            return
        value = tap.select(index, module, args, kwargs, output)
        if tap.multi:
            self.store.setdefault(tap.name, {})[index] = value
        else:
            self.store[tap.name] = value
        if self.keep_order:
            self.fired.append((tap.name, index))
        if self._stop_at == (tap.name, index):
            self._calls_left -= 1
            if self._calls_left == 0:
                raise StopForward(tap.name)

    def enable(self, record: bool = False) -> None:
        """Start capturing into an empty store.

        Args:
            record (bool): Record the order in which hooks fire into
                :attr:`fired` (reset first); also disarms the stop, so that
                the recorded run is a whole forward.
        """
        self.store.clear()
        self.enabled = True
        self.keep_order = record
        if record:
            self.fired = []
            self.disarm()
        self._calls_left = self._stop_calls

    def collect(self) -> Dict[str, object]:
        """Disable capturing and hand over the complete captures: a
        multi-module tap appears only if all its modules fired, as a list in
        module order."""
        captured = {}
        for tap in self.taps:
            if tap.name not in self.store:
                continue
            value = self.store[tap.name]
            if tap.multi:
                if len(value) < len(tap.modules):
                    continue
                value = [value[i] for i in range(len(tap.modules))]
            captured[tap.name] = value
        self.store.clear()
        self.enabled = False
        self.keep_order = False
        return captured

    @contextmanager
    def recording(self, record: bool = False):
        """Capture during the block; yields the dict that receives the
        captures (:meth:`collect`) when the block ends, however it ends. A
        :class:`StopForward` raised by the armed stop ends the block and is
        swallowed: it is how a stopped forward finishes::

            with taps.recording() as captured:
                teacher(x)
            use(captured['feat'])

        Args:
            record (bool): As in :meth:`enable`.
        """
        captured: Dict[str, object] = {}
        self.enable(record=record)
        try:
            yield captured
        except StopForward:
            pass
        finally:
            captured.update(self.collect())

    def unfired(self) -> List[str]:
        """``'tap name:module path'`` of the tapped modules that did not fire
        in the last recorded run."""
        fired = set(self.fired)
        return [
            f'{tap.name}:{path}' for tap in self.taps
            for index, path in enumerate(tap.paths)
            if (tap.name, index) not in fired
        ]

    def stop_after_last_fired(self) -> None:
        """Make the forward raise :class:`StopForward` right after the hook
        that fired last in the last recorded run has captured (at the same
        call of it, if its module runs several times). Nothing to do if no
        hook fired."""
        self.disarm()
        if self.fired:
            last = self.fired[-1]
            self._stop_at = last
            self._stop_calls = self.fired.count(last)

    def disarm(self) -> None:
        """Let forwards run to the end again."""
        self._stop_at = None
        self._stop_calls = 0
