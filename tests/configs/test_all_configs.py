"""Every config under configs/ builds (with its build-time dry run), and
every digits-scale config trains for a few iterations."""
import copy
import glob
import json
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.runner import Runner

import cls_kd
from cls_kd.registry import MODELS

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(
    osp.relpath(p, ROOT)
    for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
    # Synthesis configs (no model) are run by tests/tools/test_synthesize.py.
    if '_base_' not in p and f'{osp.sep}synthesis{osp.sep}' not in p)
# Test-only configs of a head-less backbone (nothing to train): tested by
# tests/tools/test_label_free_export.py.
TEST_ONLY = {'configs/attndistill/knn_vit-4x32-p8_digits.py'}
DIGITS = [
    c for c in CONFIGS if c.endswith('_digits.py') and c not in TEST_ONLY
]
# Built (with more checks) by test_scalekd_configs.py: big models, built once.
BUILT_ELSEWHERE = {
    c for c in CONFIGS
    if c.startswith('configs/scalekd/scalekd_') and 'in1k' in c
} | {  # by test_scalekd_traditional_recipe.py::test_fd_config_builds
    'configs/scalekd/fd_swin-small_resnet50_8xb32-100e_in1k.py'
}

with open(osp.join(ROOT, 'tests', 'data',
                   'distiller_state_dict_keys_before_core_v2.json')) as f:
    KEYS_BEFORE_CORE_V2 = json.load(f)

cls_kd.register_all_modules()


def _offline(cfg):
    """No downloads in tests: teachers keep random weights, on purpose."""
    model = cfg.model
    for spec in [model.get('teacher')] + list(
            (model.get('teachers') or {}).values()):
        if spec:
            spec['checkpoint'], spec['random_init'] = None, True
    return cfg


def test_configs_found():
    assert set(KEYS_BEFORE_CORE_V2) <= set(DIGITS)
    assert len(DIGITS) >= 4 and len(CONFIGS) > len(DIGITS)
    for method in ('kd', 'dkd', 'nkd', 'deit', 'vitkd', 'scalekd',
                   'dearkd', 'attndistill', 'dist', 'funmatch'):
        assert any(c.startswith(f'configs/{method}/') and 'in1k' in c
                   for c in CONFIGS), method
        assert osp.exists(osp.join(ROOT, 'configs', method, 'README.md'))
        assert osp.exists(osp.join(ROOT, 'configs', method, 'metafile.yml'))


@pytest.mark.parametrize('config',
                         [c for c in CONFIGS if c not in BUILT_ELSEWHERE])
def test_config_builds(config):
    cfg = Config.fromfile(osp.join(ROOT, config))
    assert cfg.default_scope == 'cls_kd'
    model_cfg = cfg.model
    if 'Distiller' in model_cfg.type:
        _offline(cfg)
    model_cfg.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    model = MODELS.build(model_cfg)
    assert model is not None
    # Checkpoints written before the distiller family (core v2) still load:
    # same state-dict keys and shapes, recorded with that code.
    if config in KEYS_BEFORE_CORE_V2:
        shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
        assert shapes == KEYS_BEFORE_CORE_V2[config]


@pytest.mark.parametrize('config', CONFIGS)
def test_config_hooks_build(config):
    """Hooks are built by the runner, after the model: a hook dict that
    kept mmpretrain's `_scope_` from an `mmpretrain::` base while naming a
    cls_kd hook would fail only once a run has started."""
    from mmengine.registry import HOOKS, DefaultScope
    from mmengine.visualization import Visualizer
    Visualizer.get_instance('test_config_hooks_build')  # VisualizationHook
    cfg = Config.fromfile(osp.join(ROOT, config))
    hooks = [h for h in (cfg.get('default_hooks') or {}).values() if h]
    hooks += list(cfg.get('custom_hooks') or [])
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        for hook in hooks:
            assert HOOKS.build(copy.deepcopy(hook)) is not None, hook


@pytest.mark.parametrize('config', DIGITS)
def test_digits_config_trains(config, small_digits_cfg, tmp_path):
    cfg = _offline(Config.fromfile(osp.join(ROOT, config)))
    small_digits_cfg(cfg, tmp_path, train_images=24, batch_size=8)
    if cfg.val_dataloader:
        cfg.val_dataloader.dataset.indices = 16
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 9
    if cfg.val_dataloader:  # top-1, or k-NN top-1 for label-free students
        assert any('accuracy' in k or 'knn' in k
                   for k in runner.message_hub.log_scalars)


def test_metafiles_point_at_existing_configs():
    import yaml
    metafiles = glob.glob(osp.join(ROOT, 'configs', '*', 'metafile.yml'))
    assert metafiles
    for path in metafiles:
        with open(path) as f:
            meta = yaml.safe_load(f)
        for model in meta['Models']:
            assert osp.isfile(osp.join(ROOT, model['Config'])), model['Name']
            assert osp.basename(model['Config']) == model['Name'] + '.py'
            assert osp.isfile(osp.join(ROOT, meta['Collections'][0]
                                       ['README'])), path


def test_every_config_syncs_buffers_before_validation_and_saving():
    """Multi-process runs validate and save the same BatchNorm statistics
    on every rank: the ImageNet configs, whose runtime base is mmpretrain's,
    add the hook themselves."""
    missing = []
    for config in CONFIGS:
        cfg = Config.fromfile(osp.join(ROOT, config))
        hook = (cfg.get('default_hooks') or {}).get('sync_buffers') or {}
        if hook.get('type') != 'SyncStudentBuffersHook':
            missing.append(config)
    assert not missing, f'no SyncStudentBuffersHook in: {missing}'
