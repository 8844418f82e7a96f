"""What ``--amp`` means, decided in one place for every tool.

bfloat16 autocast (cls_kd's ``AutocastOptimWrapper``, no loss scaler: it has
float32's range) where the device computes in bfloat16 natively; float16
with dynamic loss scaling (mmengine's ``AmpOptimWrapper``) on GPUs without
bfloat16. A CPU without native bfloat16 (no AVX512_BF16 and no AMX, e.g.
an AVX2 machine) only emulates it: a digits KD training step ran 13x to 24x
slower than in float32 on AVX2 CPUs (two machines), and float16 autocast on
a CPU is no faster. ``--amp`` is refused there unless forced (to check bfloat16
numerics, say), rather than silently running 24x slower.
"""
from typing import NamedTuple, Optional, Tuple

import torch

__all__ = [
    'AmpChoice', 'AmpUnavailableError', 'cpu_bf16_support', 'choose_amp',
    'apply_amp'
]

# Measured on a digits KD step (ResNet-18-c16 -> ViT-t4, batch 64) on two
# AVX2 machines (tools/analysis/benchmark.py, bf16 vs fp32 step time).
_EMULATED_BF16_SLOWDOWN = '13x to 24x'

# Wrapper of each kind of precision, for a plain config wrapper and for one
# that takes cls_kd's non-finite step guard.
_WRAPPERS = {
    'bfloat16': {
        'OptimWrapper': 'AutocastOptimWrapper',
        'NonFiniteGuardOptimWrapper': 'AutocastOptimWrapper',
    },
    'float16': {
        'OptimWrapper': 'AmpOptimWrapper',
        'NonFiniteGuardOptimWrapper': 'NonFiniteGuardAmpOptimWrapper',
    },
}
# Wrappers that take `skip_nonfinite` (on by default in each).
_GUARDED = ('NonFiniteGuardOptimWrapper', 'NonFiniteGuardAmpOptimWrapper',
            'AutocastOptimWrapper')


class AmpUnavailableError(RuntimeError):
    """``--amp`` asked for on a device where it would only slow training
    down."""


class AmpChoice(NamedTuple):
    """The precision ``--amp`` gives on one device.

    Attributes:
        wrapper (str): Optimizer wrapper type for a plain config wrapper:
            ``'AutocastOptimWrapper'`` or ``'AmpOptimWrapper'``.
        dtype (str): ``'bfloat16'`` or ``'float16'``.
        reason (str): Why, for the log.
    """
    wrapper: str
    dtype: str
    reason: str

    def describe(self) -> str:
        scaling = ' with dynamic loss scaling' if \
            self.dtype == 'float16' else ''
        return (f'--amp: {self.dtype} autocast{scaling} '
                f'({self.wrapper}): {self.reason}')


def _x86_flags() -> dict:
    """The CPU feature flags PyTorch detected (empty if it does not say)."""
    get = getattr(getattr(torch._C, '_cpu', None), '_get_cpu_capability',
                  None)
    try:
        return dict(get()) if get is not None else {}
    except RuntimeError:
        return {}


def cpu_bf16_support() -> Tuple[bool, str]:
    """Whether this CPU computes in bfloat16 natively, and what PyTorch
    reports about it.

    x86 needs AVX512_BF16 or AMX (AMX_BF16); on other architectures
    oneDNN's bfloat16 check is used (it looks for the ARM BF16 extension).

    Returns:
        tuple: ``(native, description)``, e.g. ``(False, 'CPU capability
        AVX2, no AVX512_BF16 or AMX_BF16')``.
    """
    capability = torch.backends.cpu.get_cpu_capability()
    flags = _x86_flags()
    if flags.get('architecture', 'x86_64') in ('x86_64', 'x86', 'i386'):
        native = [name.upper() for name in ('avx512_bf16', 'amx_bf16')
                  if flags.get(name)]
        if native:
            return True, (f'CPU capability {capability} with '
                          f'{" and ".join(native)}')
        return False, (f'CPU capability {capability}, no AVX512_BF16 or '
                       f'AMX_BF16')
    native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    what = 'with' if native else 'without'
    return native, f'CPU capability {capability}, {what} native bfloat16'


def _cuda_bf16(device: torch.device) -> bool:
    try:  # torch >= 2.3 would otherwise count emulation (pre-Ampere GPUs)
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:
        return torch.cuda.is_bf16_supported()


def choose_amp(device: torch.device, force: bool = False) -> AmpChoice:
    """The mixed precision ``--amp`` gives on ``device``.

    Args:
        device (torch.device | str): Where training runs.
        force (bool): On a CPU without native bfloat16, use bfloat16 anyway
            instead of refusing. Defaults to False.

    Returns:
        AmpChoice: ``(wrapper, dtype, reason)``.

    Raises:
        AmpUnavailableError: On a CPU without native bfloat16, unless
            ``force``.
    """
    device = torch.device(device)
    if device.type == 'cuda':
        index = device.index if device.index is not None else \
            torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)
        gpu = f'{torch.cuda.get_device_name(index)}, sm_{major}{minor}'
        if _cuda_bf16(device):
            return AmpChoice('AutocastOptimWrapper', 'bfloat16',
                             f'the GPU ({gpu}) has bfloat16')
        return AmpChoice('AmpOptimWrapper', 'float16',
                         f'the GPU ({gpu}) has no bfloat16')
    if device.type != 'cpu':
        return AmpChoice('AmpOptimWrapper', 'float16',
                         f'device type {device.type!r}: mmengine\'s '
                         f'AmpOptimWrapper')
    native, cpu = cpu_bf16_support()
    if native:
        return AmpChoice('AutocastOptimWrapper', 'bfloat16',
                         f'the CPU has native bfloat16 ({cpu})')
    consequence = (f'bfloat16 is only emulated here ({cpu}): a digits KD '
                   f'training step ran {_EMULATED_BF16_SLOWDOWN} '
                   f'slower than in float32 on AVX2 CPUs, and float16 '
                   f'autocast on a CPU is no faster')
    if not force:
        raise AmpUnavailableError(
            f'--amp refused: {consequence}. Train in float32 (drop --amp), '
            f'or add --amp-force to run bfloat16 anyway (e.g. to check its '
            f'numerics).')
    return AmpChoice('AutocastOptimWrapper', 'bfloat16',
                     f'forced by --amp-force although {consequence}')


def apply_amp(wrapper_cfg: dict,
              choice: AmpChoice) -> Tuple[dict, Optional[str]]:
    """Switch an ``optim_wrapper`` config to the chosen precision.

    A wrapper with cls_kd's non-finite step guard becomes one with the
    guard, and keeps its ``skip_nonfinite`` (``False`` stays off); a plain
    ``OptimWrapper`` or ``AmpOptimWrapper`` stays without it. Settings that
    the new wrapper does not take (``loss_scale`` for bfloat16, ``dtype``
    for ``AmpOptimWrapper``'s float16) are dropped.

    Args:
        wrapper_cfg (dict): The config's ``optim_wrapper`` (not modified).
        choice (AmpChoice): From :func:`choose_amp`.

    Returns:
        tuple: The new config and a note on what changed (None when the
        config already used the chosen wrapper and dtype).
    """
    cfg = dict(wrapper_cfg)
    old = str(cfg.get('type', 'OptimWrapper')).split('.')[-1]  # no scope
    guarded = old in _GUARDED or 'skip_nonfinite' in cfg
    base = 'NonFiniteGuardOptimWrapper' if guarded else 'OptimWrapper'
    new = _WRAPPERS[choice.dtype][base]
    old_dtype = cfg.get('dtype') or (
        'bfloat16' if old == 'AutocastOptimWrapper' else 'float16')
    if old == new and old_dtype == choice.dtype:
        return cfg, None
    cfg['type'] = new
    if choice.dtype == 'bfloat16':
        cfg.pop('loss_scale', None)
        cfg['dtype'] = 'bfloat16'
        # AutocastOptimWrapper guards by default: a plain wrapper stays so.
        cfg['skip_nonfinite'] = (cfg.get('skip_nonfinite', True)
                                 if guarded else False)
    else:
        cfg.setdefault('loss_scale', 'dynamic')
        cfg['dtype'] = 'float16'
        if new == 'AmpOptimWrapper':
            cfg.pop('skip_nonfinite', None)
            cfg.pop('max_consecutive_skips', None)
    if new == 'AutocastOptimWrapper':
        cfg.pop('use_fsdp', None)
    return cfg, (f'--amp: the config\'s {old} becomes {new} '
                 f'({choice.dtype}).')
