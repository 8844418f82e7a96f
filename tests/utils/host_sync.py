"""Find the ops of a step that would make the host wait for a CUDA device.

A training step that reads a tensor value on the host (``.item()``,
``if loss:``), builds a tensor whose size depends on values (``x[mask]``)
or copies between host and device without ``non_blocking`` stalls the
Python thread until the GPU has caught up, every step.
``torch.cuda.set_sync_debug_mode('error')`` finds those on a GPU;
:class:`HostSyncRecorder` finds them on any device, CPU included, so that a
CPU-only test can keep a step free of them. It treats every tensor as one
on the GPU. A test helper, not part of the package: ``test_host_sync.py``
beside it loads it by path.

What it sees (each checked on CPU in ``test_host_sync.py``):

- aten ops (a ``TorchDispatchMode``), in the forward and in the backward
  (the CPU autograd engine runs it on the calling thread; CUDA's device
  threads get the caller's thread-local state, modes included, see
  ``ATen/ThreadLocalState.h``):

  - ``aten._local_scalar_dense``, which ``.item()``, ``bool(t)``, ``if t:``,
    ``int(t)``, ``float(t)``, ``f'{t:.2f}'`` and ``t.is_nonzero()`` call;
  - ``aten.nonzero`` (``torch.nonzero``, ``torch.where(cond)``),
    ``aten.masked_select``, the unique ops, ``repeat_interleave`` without
    ``output_size``, ``bincount``, ``histc`` without a range,
    ``aten.equal``, ``aten.allclose``;
  - boolean-mask indexing: ``aten.index`` with a bool index (``x[mask]``,
    whose ``nonzero`` runs inside the kernel, unseen) and ``aten.index_put``
    with one, which the backward of ``x[mask]`` runs;
  - blocking copies between devices, where tensors are on one (fake CUDA
    tensors in the tests): to the host, and from the host without
    ``non_blocking``.

- Python calls (a ``TorchFunctionMode``) that run no op on a CPU tensor:
  ``.tolist()``, ``.cpu()``, ``.numpy()``, ``np.asarray(t)`` (copies to the
  host); ``torch.tensor`` / ``torch.as_tensor`` given a ``device`` (host
  data copied to what is a GPU in training).

What it does not see, or sees wrongly:

- ``.to(device)`` and indexing with a Python list, on CPU tensors: on a GPU
  both copy host data to it, blocking; on the CPU nothing happens;
- ``x[mask] = value`` with a one-element value: a Python number makes it a
  ``masked_fill`` (no sync, not recorded), but so does a device tensor,
  which syncs on CUDA;
- syncs inside C++ kernels that run no op;
- tensors that stay on the host in training (built from Python numbers,
  e.g. mmengine's ``stack_batch`` sizes, or the optimizers' ``step``
  counts): reading them is free, yet recorded.

Some CPU kernels check their inputs with host reads that their CUDA
kernels leave to device asserts: ``F.one_hot(labels, num_classes)`` runs
``aminmax`` and two ``_local_scalar_dense`` on CPU tensors only (ATen's
``Onehot.cpp``). The calls in :data:`_CPU_ONLY_CHECKS` are exempt, keyed
by the torch function and its arguments; the functions of ours in
:data:`_CPU_ONLY_CALLERS`, which read only CPU tensors, are exempt too.
"""
import os
import re
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode, resolve_name
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ['HostSync', 'HostSyncError', 'HostSyncRecorder']

aten = torch.ops.aten

_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_STACK_DEPTH = 4
# An entry of traceback.format_stack(), as anomaly mode stores them.
_TRACEBACK_ENTRY = re.compile(r'File "(.+)", line (\d+), in (\S+)')


def _always(args, kwargs) -> bool:
    return True


def _mask_index(args, kwargs) -> bool:
    """``index`` / ``index_put`` with a boolean (or uint8) index, except a
    non-accumulating put of one value (a ``masked_fill``)."""
    indices = args[1] if len(args) > 1 else kwargs.get('indices', ())
    if not any(i is not None and i.dtype in (torch.bool, torch.uint8)
               for i in indices):
        return False
    if len(args) < 3:  # index: (self, indices)
        return True
    accumulate = args[3] if len(args) > 3 else kwargs.get('accumulate')
    return bool(accumulate) or args[2].numel() != 1


def _no_output_size(args, kwargs) -> bool:
    return kwargs.get('output_size') is None


def _no_range(args, kwargs) -> bool:
    low = args[2] if len(args) > 2 else kwargs.get('min', 0)
    high = args[3] if len(args) > 3 else kwargs.get('max', 0)
    return low == high


def _blocking_copy(src: torch.Tensor, dst: torch.device,
                   non_blocking: bool) -> bool:
    if src.device.type == dst.type:
        return False
    return dst.type == 'cpu' or (src.device.type == 'cpu'
                                 and not non_blocking)


def _to_copy(args, kwargs) -> bool:
    dst = kwargs.get('device')
    return dst is not None and _blocking_copy(
        args[0], torch.device(dst), kwargs.get('non_blocking', False))


def _copy(args, kwargs) -> bool:
    non_blocking = args[2] if len(args) > 2 else kwargs.get(
        'non_blocking', False)
    return _blocking_copy(args[1], args[0].device, non_blocking)


_READ = 'reads a tensor value on the host'
_SIZE = 'the output size depends on tensor values'
_COPY = 'a blocking copy between host and device'
_MASK = 'a boolean-mask index, which the kernel turns into indices (nonzero)'

#: ``op -> (whether this call syncs, why)``, by overload packet.
_SYNC_OPS: Dict[object, Tuple[Callable, str]] = {
    aten._local_scalar_dense: (_always, _READ),
    aten.is_nonzero: (_always, _READ),
    aten.equal: (_always, _READ),
    aten.allclose: (_always, _READ),
    aten.nonzero: (_always, _SIZE),
    aten.masked_select: (_always, _SIZE),
    aten._unique: (_always, _SIZE),
    aten._unique2: (_always, _SIZE),
    aten.unique_dim: (_always, _SIZE),
    aten.unique_consecutive: (_always, _SIZE),
    aten.unique_dim_consecutive: (_always, _SIZE),
    aten.bincount: (_always, _SIZE),
    aten.repeat_interleave: (_no_output_size, _SIZE),
    aten.histc: (_no_range, 'reads the value range on the host'),
    aten.index: (_mask_index, _MASK),
    aten.index_put: (_mask_index, _MASK),
    aten.index_put_: (_mask_index, _MASK),
    aten._index_put_impl_: (_mask_index, _MASK),
    aten._to_copy: (_to_copy, _COPY),
    aten.copy_: (_copy, _COPY),
}


def _given_device(args, kwargs) -> bool:
    return kwargs.get('device') is not None


#: Python calls that copy between host and device with no op seen on a CPU
#: tensor: ``function -> (whether this call syncs, why)``.
_HOST_COPIES: Dict[Callable, Tuple[Callable, str]] = {
    torch.Tensor.tolist: (_always, 'copies the tensor to the host'),
    torch.Tensor.cpu: (_always, 'copies the tensor to the host'),
    torch.Tensor.numpy: (_always, 'copies the tensor to the host'),
    torch.Tensor.__array__: (_always, 'copies the tensor to the host'),
    torch.tensor: (_given_device, 'copies host data to the device'),
    torch.as_tensor: (_given_device, 'copies host data to the device'),
}


def _num_classes_given(args, kwargs) -> bool:
    return (args[1] if len(args) > 1 else kwargs.get('num_classes', -1)) >= 0


#: torch calls whose host reads happen on CPU tensors only: ``function ->
#: whether this call is exempt``. With ``num_classes`` given, the CUDA
#: one_hot checks the labels with a device assert in its scatter; without
#: it, every device reads the largest label.
_CPU_ONLY_CHECKS: Dict[Callable, Callable] = {
    F.one_hot: _num_classes_given,
}

#: Functions of ours, ``(module, name)``, that read tensors only when they
#: are on the CPU (where reading is free) and skip the read on a GPU; their
#: host reads are not recorded.
_CPU_ONLY_CALLERS = {
    # The generator's mask ratio, checked by the build-time dry run.
    ('cls_kd.models.losses.vitkd', 'check_mask_ratio'),
}


class HostSyncError(RuntimeError):
    """A host-device synchronisation inside :class:`HostSyncRecorder` with
    ``raise_on_sync=True``."""


@dataclass(frozen=True)
class HostSync:
    """One synchronising call.

    Args:
        op (str): The aten op (``'aten.nonzero.default'``) or the Python
            call (``'torch.Tensor.tolist'``).
        api (str): The torch call it ran in (``'torch.Tensor.__getitem__'``,
            ``'torch.Tensor.backward'``), empty if none.
        reason (str): Why it synchronises.
        stack (tuple[str]): ``'file:line in function'`` of the innermost
            frames outside torch, innermost first; for an op of the
            backward, those of the forward that created its node when
            autograd recorded them (``torch.autograd.detect_anomaly()``),
            else those of the ``backward()`` call.
        node (str): The autograd node running the op (``'IndexBackward0'``),
            empty outside the backward.
    """
    op: str
    api: str
    reason: str
    stack: Tuple[str, ...]
    node: str = ''

    @property
    def where(self) -> str:
        """The innermost frame outside torch: the culprit."""
        return self.stack[0] if self.stack else '<unknown>'

    def __str__(self) -> str:
        via = f' via {self.api}' if self.api and self.api != self.op else ''
        node = f' in {self.node}' if self.node else ''
        callers = ''.join(f'\n    called from {s}' for s in self.stack[1:])
        return f'{self.op}{via}{node} at {self.where}: {self.reason}{callers}'


def _shown(path: str, line: int, function: str) -> str:
    rel = os.path.relpath(path)
    return f'{path if rel.startswith("..") else rel}:{line} in {function}'


def _outside_torch(path: str) -> bool:
    return not path.startswith(_TORCH_DIR) and path != __file__


def _live_stack() -> Tuple[Optional[tuple], Tuple[str, ...]]:
    """``(module, function)`` of the innermost frame outside torch and this
    module, and up to :data:`_STACK_DEPTH` such frames, shown."""
    innermost, shown = None, []
    frame = sys._getframe(1)
    while frame is not None and len(shown) < _STACK_DEPTH:
        code = frame.f_code
        if _outside_torch(code.co_filename):
            if innermost is None:
                innermost = (frame.f_globals.get('__name__'), code.co_name)
            shown.append(_shown(code.co_filename, frame.f_lineno,
                                code.co_name))
        frame = frame.f_back
    return innermost, tuple(shown)


def _forward_stack(node) -> Tuple[str, ...]:
    """The frames outside torch that created autograd ``node``, innermost
    first, if anomaly mode recorded them."""
    frames = []
    for entry in reversed(node.metadata.get('traceback_') or []):
        match = _TRACEBACK_ENTRY.search(entry)
        if match and _outside_torch(match[1]):
            frames.append(_shown(match[1], match[2], match[3]))
    return tuple(frames[:_STACK_DEPTH])


class _FunctionMode(TorchFunctionMode):
    """Python-level calls: host copies, exempt checks, and the name of the
    outermost torch call for the events of the ops it runs."""

    def __init__(self, recorder: 'HostSyncRecorder'):
        super().__init__()
        self.recorder = recorder

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        rule = _HOST_COPIES.get(func)
        exempt = _CPU_ONLY_CHECKS.get(func)
        quiet = exempt is not None and exempt(args, kwargs)
        if rule is not None and rule[0](args, kwargs):
            self.recorder.record(resolve_name(func), func, rule[1])
            quiet = True  # one event per call, not one per op it runs
        outer = self.recorder.api, self.recorder.quiet
        self.recorder.api = func
        self.recorder.quiet = outer[1] or quiet
        try:
            return func(*args, **kwargs)
        finally:
            self.recorder.api, self.recorder.quiet = outer


class _DispatchMode(TorchDispatchMode):
    """aten ops that synchronise (see :data:`_SYNC_OPS`)."""

    def __init__(self, recorder: 'HostSyncRecorder'):
        super().__init__()
        self.recorder = recorder

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        rule = _SYNC_OPS.get(func.overloadpacket)
        if rule is not None and not self.recorder.quiet and rule[0](
                args, kwargs):
            self.recorder.record(str(func), self.recorder.api, rule[1])
        return func(*args, **kwargs)


class HostSyncRecorder:
    """Records (or refuses) every host-device synchronisation in its block.

    See the module docstring for what counts and what cannot be seen.
    Example::

        with HostSyncRecorder() as syncs:
            model.loss(inputs, data_samples)['loss'].backward()
        assert not syncs.events, '\\n'.join(map(str, syncs.events))

    Args:
        raise_on_sync (bool): Raise :class:`HostSyncError` at the first one,
            before it runs, instead of recording it. Defaults to False.

    Attributes:
        events (list[HostSync]): What was recorded, in order.
    """

    def __init__(self, raise_on_sync: bool = False):
        self.raise_on_sync = raise_on_sync
        self.events: List[HostSync] = []
        # The outermost torch call running, and whether its ops are exempt.
        self.api: Optional[Callable] = None
        self.quiet = False
        self._modes: Optional[ExitStack] = None

    def record(self, op: str, api: Optional[Callable], reason: str) -> None:
        """Add one event (or raise it, with ``raise_on_sync``), unless a
        function of :data:`_CPU_ONLY_CALLERS` makes it."""
        caller, stack = _live_stack()
        if caller in _CPU_ONLY_CALLERS:
            return
        node = torch._C._current_autograd_node()
        if node is not None:
            stack = _forward_stack(node) or stack
        api_name = (resolve_name(api) or repr(api)) if api else ''
        event = HostSync(op, api_name, reason, stack,
                         node.name() if node else '')
        if self.raise_on_sync:
            raise HostSyncError(f'Host-device synchronisation: {event}')
        self.events.append(event)

    def __enter__(self) -> 'HostSyncRecorder':
        self._modes = ExitStack()
        self._modes.enter_context(_FunctionMode(self))
        self._modes.enter_context(_DispatchMode(self))
        return self

    def __exit__(self, *exc_info) -> None:
        self._modes.close()
        self._modes = None
