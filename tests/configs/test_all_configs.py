"""Every config under configs/ builds (with its build-time dry run) into
what it says, and every digits-scale config trains for a few iterations
with a frozen teacher.

Each config file is parsed once per run (``load_config``) and each
real-size model built once: the configs that another module builds with
more checks (BUILT_ELSEWHERE) get the common distiller checks there
(``check_distiller``, tests/configs/conftest.py)."""
import copy
import glob
import json
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.runner import Runner

import cls_kd

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
} | {  # one per width, by test_dearkd_configs.py::test_built_model
    c for c in CONFIGS
    if c.startswith('configs/dearkd/dearkd_') and c.endswith('_in1k.py')
}

with open(osp.join(ROOT, 'tests', 'data',
                   'distiller_state_dict_keys_before_core_v2.json')) as f:
    KEYS_BEFORE_CORE_V2 = json.load(f)

cls_kd.register_all_modules()


def test_configs_found():
    assert set(KEYS_BEFORE_CORE_V2) <= set(DIGITS)
    assert len(DIGITS) >= 4 and len(CONFIGS) > len(DIGITS)
    for method in ('kd', 'dkd', 'nkd', 'deit', 'vitkd', 'scalekd',
                   'dearkd', 'attndistill', 'dist', 'funmatch'):
        assert any(c.startswith(f'configs/{method}/') and 'in1k' in c
                   for c in CONFIGS), method
        assert osp.exists(osp.join(ROOT, 'configs', method, 'README.md'))
        assert osp.exists(osp.join(ROOT, 'configs', method, 'metafile.yml'))


def test_dearkd_widths_are_built_elsewhere():
    """test_dearkd_configs.py builds them (one config per width)."""
    dearkd = {c for c in BUILT_ELSEWHERE if c.startswith('configs/dearkd/')}
    assert {osp.basename(c).split('_')[2] for c in dearkd} == {
        'deit-tiny', 'deit-small', 'deit-base'}


@pytest.mark.parametrize('config', [
    # ImageNet-size models (with a 224 px dry run) are slow on a CPU.
    pytest.param(c, marks=() if c.endswith('_digits.py') else pytest.mark.slow)
    for c in CONFIGS if c not in BUILT_ELSEWHERE
])
def test_config_builds(config, load_config, build_offline, check_distiller):
    """The model is of the config's type; a distiller passes
    ``check_distiller`` (trainable = student + connectors + a loss's own
    parameters, frozen eval-mode teachers outside the module tree, every tap
    captured, finite dry-run losses)."""
    cfg = load_config(config)
    assert cfg.default_scope == 'cls_kd'
    model_cfg = cfg.model
    model, losses = build_offline(cfg)
    assert type(model).__name__ == model_cfg.type.split('.')[-1]
    if 'Distiller' in model_cfg.type:
        check_distiller(cfg, model, losses)
    else:  # a plain classifier (or a linear probe): something to train
        assert any(p.requires_grad for p in model.parameters())
    # Checkpoints written before the distiller family (core v2) still load:
    # same state-dict keys and shapes, recorded with that code.
    if config in KEYS_BEFORE_CORE_V2:
        shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
        assert shapes == KEYS_BEFORE_CORE_V2[config]


@pytest.mark.parametrize('config', CONFIGS)
def test_config_hooks_build(config, load_config):
    """Hooks are built by the runner, after the model: a hook dict that
    kept mmpretrain's `_scope_` from an `mmpretrain::` base while naming a
    cls_kd hook would fail only once a run has started. Each builds into
    the class it names."""
    from mmengine.registry import HOOKS, DefaultScope
    from mmengine.visualization import Visualizer
    Visualizer.get_instance('test_config_hooks_build')  # VisualizationHook
    cfg = load_config(config)
    hooks = [h for h in (cfg.get('default_hooks') or {}).values() if h]
    hooks += list(cfg.get('custom_hooks') or [])
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        for hook in hooks:
            built = HOOKS.build(copy.deepcopy(hook))
            assert type(built).__name__ == hook['type'].split('.')[-1], hook


@pytest.mark.parametrize('config', DIGITS)
def test_digits_config_trains(config, load_config, offline, small_digits_cfg,
                              tmp_path):
    """9 steps: every logged loss finite from the first step on, the
    optimizer holding exactly the student's, the connectors' and the
    losses' parameters, the teachers' weights (and statistics)
    unchanged."""
    cfg = offline(load_config(config))
    small_digits_cfg(cfg, tmp_path, train_images=24, batch_size=8)
    if cfg.val_dataloader:
        cfg.val_dataloader.dataset.indices = 16
    runner = Runner.from_cfg(cfg)
    model = runner.model
    distiller = hasattr(model, 'teachers')
    teachers = dict(model.teachers.items()) if distiller else {}
    before = {(name, key): value.clone()
              for name, teacher in teachers.items()
              for key, value in teacher.state_dict().items()}
    runner.train()
    assert runner.iter == 9
    losses = {k: runner.message_hub.get_scalar(k).data[0]
              for k in runner.message_hub.log_scalars
              if k.startswith('train/loss')}
    assert 'train/loss' in losses
    for name, values in losses.items():
        assert len(values) == 9 and np.isfinite(values).all(), (name, values)
    optimized = {id(p) for group in runner.optim_wrapper.optimizer.param_groups
                 for p in group['params']}
    trained = [model.student, model.connectors, model.losses
               ] if distiller else [model]
    assert optimized == {id(p) for m in trained for p in m.parameters()}
    for (name, key), value in before.items():
        assert torch.equal(teachers[name].state_dict()[key], value), (name,
                                                                       key)
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


def test_every_config_syncs_buffers_before_validation_and_saving(
        load_config):
    """Multi-process runs validate and save the same BatchNorm statistics
    on every rank: the ImageNet configs, whose runtime base is mmpretrain's,
    add the hook themselves."""
    missing = []
    for config in CONFIGS:
        cfg = load_config(config)
        hook = (cfg.get('default_hooks') or {}).get('sync_buffers') or {}
        if hook.get('type') != 'SyncStudentBuffersHook':
            missing.append(config)
    assert not missing, f'no SyncStudentBuffersHook in: {missing}'
