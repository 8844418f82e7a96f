"""Smoke test of tools/analysis/benchmark.py (no timing claims)."""
import importlib.util
import json
import os.path as osp

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
KD_CONFIG = 'configs/kd/kd_resnet18-c16_vit-t4-p8_1xb64_digits.py'
EXPECTED_KEYS = {
    'config', 'device', 'device_name', 'torch', 'precision', 'amp',
    'compile', 'batch_size', 'input_size', 'iters', 'warmup',
    'images_per_s', 'step_ms_mean', 'step_ms_std', 'step_ms', 'teacher_ms',
    'teacher_share', 'peak_memory_mib', 'peak_memory_kind', 'param_groups',
    'trainable_params'
}


def _load_benchmark():
    path = osp.join(ROOT, 'tools', 'analysis', 'benchmark.py')
    spec = importlib.util.spec_from_file_location('cls_kd_benchmark', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


benchmark = _load_benchmark()


def test_benchmark_kd_digits_cpu(tmp_path, monkeypatch, capsys):
    # The teacher's config path in the KD config is relative to the repo.
    monkeypatch.chdir(ROOT)
    out = tmp_path / 'results.json'
    benchmark.main([
        KD_CONFIG, '--device', 'cpu', '--iters', '2', '--warmup', '1',
        '--batch-size', '4', '--out',
        str(out)
    ])
    results = json.loads(out.read_text())
    assert EXPECTED_KEYS <= set(results)
    assert results['images_per_s'] > 0
    assert 0 < results['teacher_share'] < 1
    assert list(results['teacher_ms']) == ['teacher']
    assert results['batch_size'] == 4
    assert results['input_size'] == [32, 32]
    assert len(results['step_ms']) == 2
    assert results['param_groups'] >= 1
    assert results['peak_memory_mib'] > 0
    printed = capsys.readouterr().out
    assert 'images/s' in printed and 'teacher share' in printed


def test_benchmark_needs_optim_wrapper(tmp_path):
    config = tmp_path / 'no_optim.py'
    config.write_text("model = dict(type='ImageClassifier')\n")
    with pytest.raises(SystemExit, match='no `optim_wrapper`'):
        benchmark.main([str(config), '--device', 'cpu'])


@pytest.mark.skipif(torch.cuda.is_available(), reason='CUDA is available')
def test_benchmark_cuda_without_cuda():
    with pytest.raises(SystemExit, match='CUDA is not available'):
        benchmark.main([osp.join(ROOT, KD_CONFIG), '--device', 'cuda'])
