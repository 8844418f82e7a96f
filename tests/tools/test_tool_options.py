"""Command-line options of tools/train.py, tools/test.py and the benchmark
that only change the config (no run): --amp, --tensorboard, mmpretrain's
test options."""
import importlib.util
import os.path as osp

import pytest
import torch
from mmengine.config import Config

import cls_kd
from cls_kd.utils import amp

cls_kd.register_all_modules(init_default_scope=False)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
KD_CFG = osp.join(ROOT, 'configs/kd/kd_resnet18-c16_vit-t4-p8_1xb64_digits.py')


def _tool(name):
    path = osp.join(ROOT, 'tools', f'{name}.py')
    spec = importlib.util.spec_from_file_location(
        f'options_{name.replace("/", "_")}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train = _tool('train')
test = _tool('test')


@pytest.fixture
def avx2(monkeypatch):
    """A CPU without native bfloat16, and no CUDA."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(amp, 'cpu_bf16_support', lambda:
                        (False, 'CPU capability AVX2, no AVX512_BF16'))


def train_cfg(*options):
    args = train.parse_args([KD_CFG, '--work-dir', '/tmp/unused', *options])
    return train.merge_args(Config.fromfile(KD_CFG), args)


# -------------------------------------------------------------- --amp
def test_train_amp_refused_on_cpu_without_bf16(avx2):
    with pytest.raises(SystemExit) as info:
        train_cfg('--amp')
    assert str(info.value).startswith(
        'train.py: error: --amp refused: bfloat16 is only emulated here '
        '(CPU capability AVX2, no AVX512_BF16)')


def test_train_amp_force(avx2, capsys):
    cfg = train_cfg('--amp', '--amp-force')
    assert cfg.optim_wrapper.type == 'AutocastOptimWrapper'
    assert cfg.optim_wrapper.dtype == 'bfloat16'
    assert cfg.optim_wrapper.skip_nonfinite is True  # the config's guard
    printed = capsys.readouterr().out
    assert '--amp: bfloat16 autocast (AutocastOptimWrapper): forced by ' \
        '--amp-force' in printed
    assert "--amp: the config's NonFiniteGuardOptimWrapper becomes " \
        'AutocastOptimWrapper (bfloat16).' in printed


def test_train_amp_keeps_the_guard_off_key(avx2):
    cfg = train_cfg('--amp-force', '--cfg-options',
                    'optim_wrapper.skip_nonfinite=False')
    assert (cfg.optim_wrapper.type, cfg.optim_wrapper.skip_nonfinite) == \
        ('AutocastOptimWrapper', False)


def test_train_amp_on_bf16_cpu_same_as_benchmark(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(amp, 'cpu_bf16_support', lambda:
                        (True, 'CPU capability AVX512 with AMX_BF16'))
    cfg = train_cfg('--amp')
    benchmark = _tool('analysis/benchmark')
    args = benchmark.parse_args([KD_CFG, '--amp'])
    choice = benchmark.choose_precision(args, torch.device('cpu'))
    assert (cfg.optim_wrapper.type, cfg.optim_wrapper.dtype) == \
        (choice.wrapper, choice.dtype) == ('AutocastOptimWrapper', 'bfloat16')


def test_benchmark_amp_refused_before_building(avx2):
    benchmark = _tool('analysis/benchmark')
    with pytest.raises(SystemExit) as info:
        benchmark.main([KD_CFG, '--device', 'cpu', '--amp'])
    assert str(info.value).startswith(
        'benchmark.py: error: --amp refused: bfloat16 is only emulated here')


def test_test_amp(avx2):
    args = test.parse_args([KD_CFG, 'x.pth', '--amp'])
    with pytest.raises(SystemExit, match='test.py: error: --amp refused'):
        test.merge_test_args(Config.fromfile(KD_CFG), args)
    args = test.parse_args([KD_CFG, 'x.pth', '--amp', '--amp-force'])
    cfg = test.merge_test_args(Config.fromfile(KD_CFG), args)
    assert cfg.test_cfg.fp16 is True


# -------------------------------------------------------- --tensorboard
def test_tensorboard_adds_backend(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, 'find_spec', lambda name, *a: object()
        if name == 'tensorboard' else real(name, *a))
    cfg = train_cfg('--tensorboard')
    assert cfg.visualizer.vis_backends == [
        dict(type='LocalVisBackend'),
        dict(type='TensorboardVisBackend')
    ]


def test_tensorboard_missing_package(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, 'find_spec', lambda name, *a: None
        if name == 'tensorboard' else real(name, *a))
    with pytest.raises(SystemExit) as info:
        train_cfg('--tensorboard')
    assert str(info.value) == (
        'train.py: error: --tensorboard needs the tensorboard package: '
        "pip install 'cls_kd[tensorboard]' (or pip install tensorboard).")


def test_compile_flag_and_key_add_the_hook():
    hooks = train_cfg('--compile').custom_hooks
    assert [h['type'] for h in hooks].count('cls_kd.CompileHook') == 1
    assert 'compile' not in train_cfg('--compile')  # not mmengine's compile
    cfg = Config.fromfile(KD_CFG)
    cfg.compile = dict(mode='max-autotune', dynamic=False)
    args = train.parse_args([KD_CFG, '--work-dir', '/tmp/unused'])
    merged = train.merge_args(cfg, args)
    assert 'compile' not in merged
    assert [h for h in merged.custom_hooks if 'Compile' in h['type']] == [
        dict(type='cls_kd.CompileHook', mode='max-autotune', dynamic=False)
    ]
    assert not any('Compile' in h['type'] for h in train_cfg().custom_hooks)


def test_compile_key_mistake_stops_before_building():
    cfg = Config.fromfile(KD_CFG)
    cfg.compile = dict(mdoe='max-autotune')
    args = train.parse_args([KD_CFG, '--work-dir', '/tmp/unused'])
    with pytest.raises(SystemExit, match=r"train.py: error: compile: "
                       r"unknown torch.compile option\(s\) \['mdoe'\]"):
        train.merge_args(cfg, args)


# ------------------------------------------------ mmpretrain test options
@pytest.mark.parametrize('out, item', [('p.pkl', 'pred'),
                                       ('p.pickle', 'pred'),
                                       ('m.json', 'metrics'),
                                       ('m.yaml', 'metrics')])
def test_out_item_follows_the_extension(out, item):
    assert test.parse_args([KD_CFG, 'x.pth', '--out', out]).out_item == item


def test_out_item_errors(capsys):
    with pytest.raises(SystemExit):
        test.parse_args([KD_CFG, 'x.pth', '--out-item', 'metrics'])
    assert '--out-item needs --out' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        test.parse_args([KD_CFG, 'x.pth', '--out', 'p.json', '--out-item',
                         'pred'])
    assert "--out-item pred writes a pickle: name it .pkl, not 'p.json'" \
        in capsys.readouterr().err


def test_show_dir_turns_on_the_visualization_hook():
    args = test.parse_args([KD_CFG, 'x.pth', '--show-dir', 'vis',
                            '--interval', '5', '--no-pin-memory'])
    cfg = test.merge_test_args(Config.fromfile(KD_CFG), args)
    hook = cfg.default_hooks.visualization
    assert (hook.enable, hook.show, hook.out_dir, hook.interval) == \
        (True, False, 'vis', 5)
    assert cfg.test_dataloader.pin_memory is False


def test_tta_wraps_the_model_and_flips():
    args = test.parse_args([KD_CFG, 'x.pth', '--tta'])
    cfg = test.merge_test_args(Config.fromfile(KD_CFG), args)
    assert cfg.model.type == 'mmpretrain.AverageClsScoreTTA'
    assert cfg.model.module.type == 'ClassificationDistiller'
    pipeline = cfg.test_dataloader.dataset.pipeline
    assert [t['type'] for t in pipeline] == [
        'LoadImageFromFile', 'Resize', 'TestTimeAug']
    flips = pipeline[-1]['transforms'][0]
    assert [f['prob'] for f in flips] == [1., 0.]
