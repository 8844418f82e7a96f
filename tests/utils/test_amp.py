"""What --amp means: one decision for train.py, test.py and benchmark.py."""
import logging

import pytest
import torch
import torch.nn as nn
from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper

import cls_kd
from cls_kd.utils import amp
from cls_kd.utils.amp import (
    AmpChoice,
    AmpUnavailableError,
    apply_amp,
    choose_amp,
    cpu_bf16_support,
)

cls_kd.register_all_modules()

AVX2 = dict(architecture='x86_64', avx2=True, avx512_bf16=False,
            amx_bf16=False)


def fake_cpu(monkeypatch, capability, **flags):
    monkeypatch.setattr(amp, '_x86_flags', lambda: dict(AVX2, **flags))
    monkeypatch.setattr(torch.backends.cpu, 'get_cpu_capability',
                        lambda: capability)


def fake_gpu(monkeypatch, bf16: bool, capability=(8, 0)):
    monkeypatch.setattr(torch.cuda, 'current_device', lambda: 0)
    monkeypatch.setattr(torch.cuda, 'get_device_capability',
                        lambda index=None: capability)
    monkeypatch.setattr(torch.cuda, 'get_device_name',
                        lambda index=None: 'Fake GPU')
    seen = {}

    def is_bf16_supported(including_emulation=True):
        seen['including_emulation'] = including_emulation
        return bf16

    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', is_bf16_supported)
    return seen


# ------------------------------------------------------------------ CPU
def test_avx2_cpu_has_no_native_bf16(monkeypatch):
    fake_cpu(monkeypatch, 'AVX2')
    assert cpu_bf16_support() == (
        False, 'CPU capability AVX2, no AVX512_BF16 or AMX_BF16')


def test_avx512_without_bf16_extension_is_not_native(monkeypatch):
    # AVX512 alone (e.g. Skylake-X) has no bfloat16 dot products.
    fake_cpu(monkeypatch, 'AVX512')
    assert cpu_bf16_support()[0] is False


@pytest.mark.parametrize('flag, name', [('avx512_bf16', 'AVX512_BF16'),
                                        ('amx_bf16', 'AMX_BF16')])
def test_bf16_extensions_are_native(monkeypatch, flag, name):
    fake_cpu(monkeypatch, 'AVX512', **{flag: True})
    assert cpu_bf16_support() == (True, f'CPU capability AVX512 with {name}')


def test_amp_refused_on_avx2_with_the_measured_cost(monkeypatch):
    fake_cpu(monkeypatch, 'AVX2')
    with pytest.raises(AmpUnavailableError) as info:
        choose_amp('cpu')
    message = str(info.value)
    assert message.startswith('--amp refused: bfloat16 is only emulated here '
                              '(CPU capability AVX2')
    assert '13x to 24x slower than in float32' in message
    assert '--amp-force' in message and 'drop --amp' in message


def test_amp_forced_on_avx2(monkeypatch):
    fake_cpu(monkeypatch, 'AVX2')
    choice = choose_amp(torch.device('cpu'), force=True)
    assert choice[:2] == ('AutocastOptimWrapper', 'bfloat16')
    assert choice.reason.startswith('forced by --amp-force although')


def test_amp_bf16_on_cpu_with_amx(monkeypatch):
    fake_cpu(monkeypatch, 'AVX512', amx_bf16=True)
    wrapper, dtype, reason = choose_amp('cpu')
    assert (wrapper, dtype) == ('AutocastOptimWrapper', 'bfloat16')
    assert reason == ('the CPU has native bfloat16 (CPU capability AVX512 '
                      'with AMX_BF16)')


# ------------------------------------------------------------------ CUDA
def test_amp_bf16_on_ampere(monkeypatch):
    seen = fake_gpu(monkeypatch, bf16=True)
    choice = choose_amp('cuda')
    assert choice == AmpChoice('AutocastOptimWrapper', 'bfloat16',
                               'the GPU (Fake GPU, sm_80) has bfloat16')
    assert seen['including_emulation'] is False  # emulation does not count
    assert choice.describe() == (
        '--amp: bfloat16 autocast (AutocastOptimWrapper): the GPU (Fake '
        'GPU, sm_80) has bfloat16')


def test_amp_fp16_with_loss_scaling_before_ampere(monkeypatch):
    fake_gpu(monkeypatch, bf16=False, capability=(7, 0))
    choice = choose_amp('cuda:0')
    assert choice[:2] == ('AmpOptimWrapper', 'float16')
    assert choice.describe().startswith(
        '--amp: float16 autocast with dynamic loss scaling (AmpOptimWrapper)'
        ': the GPU (Fake GPU, sm_70) has no bfloat16')


# ------------------------------------------------------------ apply_amp
BF16 = AmpChoice('AutocastOptimWrapper', 'bfloat16', 'test')
FP16 = AmpChoice('AmpOptimWrapper', 'float16', 'test')
SGD = dict(type='SGD', lr=0.1)


def test_apply_bf16_to_plain_wrapper():
    cfg, note = apply_amp(dict(optimizer=SGD, clip_grad=None), BF16)
    # AutocastOptimWrapper guards by default: a plain wrapper stays plain.
    assert cfg == dict(type='AutocastOptimWrapper', dtype='bfloat16',
                       optimizer=SGD, clip_grad=None, skip_nonfinite=False)
    assert note == ("--amp: the config's OptimWrapper becomes "
                    'AutocastOptimWrapper (bfloat16).')


def test_apply_bf16_replaces_fp16_amp_and_its_scaler():
    cfg, _ = apply_amp(
        dict(type='AmpOptimWrapper', loss_scale=512., optimizer=SGD), BF16)
    assert cfg == dict(type='AutocastOptimWrapper', dtype='bfloat16',
                       optimizer=SGD, skip_nonfinite=False)


def test_apply_keeps_the_non_finite_guard():
    guarded = dict(type='NonFiniteGuardOptimWrapper', optimizer=SGD,
                   max_consecutive_skips=3)
    cfg, _ = apply_amp(guarded, FP16)
    assert cfg == dict(type='NonFiniteGuardAmpOptimWrapper',
                       dtype='float16', loss_scale='dynamic',
                       optimizer=SGD, max_consecutive_skips=3)
    cfg, _ = apply_amp(guarded, BF16)
    assert cfg['type'] == 'AutocastOptimWrapper'
    assert cfg['skip_nonfinite'] is True
    # bfloat16 autocast (guarded by default) on a GPU without bfloat16.
    cfg, _ = apply_amp(dict(type='AutocastOptimWrapper', optimizer=SGD),
                       FP16)
    assert cfg == dict(type='NonFiniteGuardAmpOptimWrapper',
                       dtype='float16', loss_scale='dynamic', optimizer=SGD)


@pytest.mark.parametrize('kind', [
    'NonFiniteGuardOptimWrapper', 'cls_kd.NonFiniteGuardOptimWrapper',
    'NonFiniteGuardAmpOptimWrapper', 'AutocastOptimWrapper'
])
def test_apply_keeps_the_guard_off_when_turned_off(kind):
    """``--cfg-options optim_wrapper.skip_nonfinite=False`` comes before
    ``--amp`` in tools/train.py: the guard stays off in either precision."""
    off = dict(type=kind, optimizer=SGD, skip_nonfinite=False)
    for choice, wrapper in ((BF16, 'AutocastOptimWrapper'),
                            (FP16, 'NonFiniteGuardAmpOptimWrapper')):
        cfg, _ = apply_amp(off, choice)
        assert (cfg['type'], cfg['skip_nonfinite']) == (wrapper, False)


def test_apply_leaves_a_matching_config_alone():
    wrapper = dict(type='AutocastOptimWrapper', optimizer=SGD)
    assert apply_amp(wrapper, BF16) == (wrapper, None)


def test_applied_config_builds():
    model = nn.Linear(2, 2)
    cfg, _ = apply_amp(dict(type='NonFiniteGuardOptimWrapper',
                            optimizer=SGD), BF16)
    wrapper = build_optim_wrapper(model, cfg)
    assert wrapper.cast_dtype == torch.bfloat16
    assert wrapper.skip_nonfinite is True


# ----------------------------------------- autocast wrapper on slow CPUs
class _Records(logging.Handler):

    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_autocast_wrapper_warns_once_on_emulated_bf16(monkeypatch):
    from cls_kd.engine.optimizers import autocast_wrapper
    monkeypatch.setattr(autocast_wrapper, 'cpu_bf16_support', lambda:
                        (False, 'CPU capability AVX2, no AVX512_BF16'))
    records = _Records()
    logger = MMLogger.get_current_instance()
    logger.addHandler(records)
    try:
        model = nn.Linear(2, 2)
        wrapper = build_optim_wrapper(
            model, dict(type='AutocastOptimWrapper', optimizer=SGD))
        for _ in range(2):
            with wrapper.optim_context(model):
                model(torch.randn(1, 2))
    finally:
        logger.removeHandler(records)
    warnings = [m for m in records.messages if 'much slower' in m]
    assert warnings == [
        'AutocastOptimWrapper: torch.bfloat16 autocast on a CPU without '
        'native bfloat16 (CPU capability AVX2, no AVX512_BF16) is emulated '
        'and much slower than float32 (a digits KD step: 13x to 24x).'
    ]
