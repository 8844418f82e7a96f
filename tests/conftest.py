"""Shared fixtures: the digits dataset written once per test session;
the ``slow`` marker (deselected by ``make test-quick``)."""
import os.path as osp
import pickle
import sys

import pytest
import torch

from cls_kd.engine.hooks import add_schedule_hook
from cls_kd.utils import resolve_teacher_paths

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'slow: real-size model builds, several processes, '
        'torch.compile or a tool in a subprocess (make test-quick deselects '
        'them with -m "not slow"; make test runs everything)')


def load_tool(path: str):
    """Import a script of ``tools/`` (not a package) as a module, from its
    path relative to the repository."""
    import importlib.util
    name = 'cls_kd_tool_' + osp.splitext(osp.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, osp.join(ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """Run from a directory that is neither the repo nor the config's."""
    cwd = tmp_path / 'elsewhere'
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


@pytest.fixture(scope='session')
def tool_loader():
    """``load_tool`` as a fixture: tests cannot import conftest."""
    return load_tool


@pytest.fixture(scope='session')
def benchmark_tool():
    """``tools/analysis/benchmark.py`` as a module."""
    return load_tool('tools/analysis/benchmark.py')


@pytest.fixture(scope='session')
def repo_root():
    return ROOT


def _predictions(path: str) -> dict:
    """``sample_idx -> (pred_score, pred_label)`` of a ``DumpResults``
    pickle (``tools/test.py --out x.pkl``)."""
    with open(path, 'rb') as f:
        return {p['sample_idx']: (p['pred_score'], int(p['pred_label']))
                for p in pickle.load(f)}


@pytest.fixture(scope='session')
def assert_same_predictions():
    """``assert_same_predictions(expected_pkl, actual_pkl)``: two
    ``DumpResults`` pickles hold the same images with the same labels and
    class scores (to 1e-6): what proves two models equal where an equal
    top-1 of a model near chance would not."""

    def check(expected: str, actual: str) -> None:
        want, got = _predictions(expected), _predictions(actual)
        assert want and sorted(want) == sorted(got)
        for idx, (score, label) in want.items():
            assert got[idx][1] == label, idx
            torch.testing.assert_close(got[idx][0], score, rtol=0,
                                       atol=1e-6)

    return check


@pytest.fixture(scope='session')
def digits_root(tmp_path_factory):
    """scikit-learn digits as an ImageNet-style folder (our converter)."""
    sys.path.insert(0, osp.join(ROOT, 'tools', 'dataset_converters'))
    try:
        import digits
    finally:
        sys.path.pop(0)
    out = str(tmp_path_factory.mktemp('digits'))
    counts = digits.convert(out)
    assert counts == {'train': 1438, 'val': 359}
    return out


@pytest.fixture(scope='session')
def small_digits_cfg(digits_root):
    """Turn a digits config into a short in-process run on the session's
    digits folder: ``apply(cfg, work_dir, train_images, batch_size)``."""

    def apply(cfg, work_dir, train_images, batch_size, epochs=3):
        for loader in ('train_dataloader', 'val_dataloader',
                       'test_dataloader'):
            if cfg.get(loader):
                cfg[loader].dataset.data_root = digits_root
                cfg[loader].num_workers = 0
                cfg[loader].persistent_workers = False
        for loop in ('val_cfg', 'test_cfg'):  # k-NN feature banks
            bank = (cfg.get(loop) or {}).get('bank_dataloader')
            if bank:
                bank.dataset.data_root = digits_root
                bank.dataset.indices = 64
                bank.num_workers = 0
                bank.persistent_workers = False
        cfg.train_dataloader.dataset.indices = train_images
        cfg.train_dataloader.batch_size = batch_size
        cfg.train_cfg.max_epochs = epochs
        cfg.train_cfg.val_interval = epochs
        cfg.default_hooks.logger.interval = 1
        cfg.work_dir = str(work_dir)
        add_schedule_hook(cfg)  # as tools/train.py does
        return resolve_teacher_paths(cfg)  # as the tools do

    return apply


@pytest.fixture(scope='session')
def tiny_vit():
    """Config of a tiny mmpretrain ViT classifier on 32x32 inputs (8x8
    patches, 16 tokens + class token): ``tiny_vit(width, depth, **backbone)``;
    ``head=False`` gives the bare backbone."""

    def build(width=32, depth=2, num_classes=10, head=True, **backbone):
        cfg = dict(
            type='VisionTransformer',
            arch=dict(
                embed_dims=width,
                num_layers=depth,
                num_heads=2,
                feedforward_channels=2 * width),
            img_size=32,
            patch_size=8,
            **backbone)
        if not head:
            return cfg
        return dict(
            type='ImageClassifier',
            backbone=cfg,
            neck=None,
            head=dict(
                type='VisionTransformerClsHead',
                num_classes=num_classes,
                in_channels=width))

    return build
