"""Every config that trains skips non-finite optimizer steps (issue 20)."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(
    osp.relpath(p, ROOT)
    for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'),
                       recursive=True))
# The wrappers that take cls_kd's guard (``skip_nonfinite``, on by default).
GUARDED = ('NonFiniteGuardOptimWrapper', 'NonFiniteGuardAmpOptimWrapper',
           'AutocastOptimWrapper')


def _unguarded(cfg):
    """Why the config's optimizer wrapper does not skip non-finite steps
    (None if it does, or if the config neither trains nor has a wrapper: a
    fragment such as a teacher, or a synthesis config)."""
    wrapper = cfg.get('optim_wrapper')
    if wrapper is None and cfg.get('train_cfg') is None:
        return None
    if wrapper is None:
        return 'train_cfg without optim_wrapper'
    kind = str(wrapper.get('type', 'OptimWrapper')).split('.')[-1]
    if kind not in GUARDED:
        return f'type={kind}'
    if wrapper.get('skip_nonfinite', True) is not True:
        return f'skip_nonfinite={wrapper["skip_nonfinite"]!r}'
    return None


def test_every_config_that_trains_is_guarded(load_config):
    offenders, trains = [], 0
    for config in CONFIGS:
        cfg = load_config(config)
        why = _unguarded(cfg)
        if why:
            offenders.append(f'{config}: {why}')
        trains += cfg.get('optim_wrapper') is not None
    assert not offenders, (
        'configs without the non-finite step guard (give optim_wrapper '
        "type='NonFiniteGuardOptimWrapper', or NonFiniteGuardAmpOptimWrapper "
        'for AmpOptimWrapper):\n' + '\n'.join(offenders))
    # Digits and ImageNet, distillers and plain students were all seen.
    assert trains >= 90


@pytest.mark.parametrize('cfg, why', [
    (dict(train_cfg=dict(max_epochs=1)), 'train_cfg without optim_wrapper'),
    (dict(optim_wrapper=dict(optimizer=dict(type='SGD'))),
     'type=OptimWrapper'),
    (dict(optim_wrapper=dict(type='AmpOptimWrapper')), 'type=AmpOptimWrapper'),
    (dict(optim_wrapper=dict(type='cls_kd.AutocastOptimWrapper',
                             skip_nonfinite=False)), 'skip_nonfinite=False'),
    (dict(optim_wrapper=dict(type='NonFiniteGuardOptimWrapper')), None),
    (dict(model=dict(type='ResNet')), None),
])
def test_offenders_are_named(cfg, why):
    assert _unguarded(Config(cfg)) == why


@pytest.mark.parametrize('config, wrapper', [
    ('configs/kd/kd_resnet18-c16_vit-t4-p8_1xb64_digits.py',
     'NonFiniteGuardOptimWrapper'),
    ('configs/digits/vit-t4-p8_1xb64_digits.py', 'NonFiniteGuardOptimWrapper'),
    ('configs/vitkd/vitkd_deit3-small_deit-tiny_8xb128_in1k.py',
     'NonFiniteGuardOptimWrapper'),
    ('configs/attndistill/'
     'attndistill_mugs-vit-small-p16_vit-tiny-p16_8xb128-accu4-800e_in1k.py',
     'NonFiniteGuardAmpOptimWrapper'),
])
def test_one_key_turns_it_off_in_a_shipped_config(config, wrapper,
                                                  monkeypatch):
    """``--cfg-options optim_wrapper.skip_nonfinite=False`` builds the
    config's wrapper with the guard off, the rest of it unchanged."""
    import torch.nn as nn
    from mmengine.optim import build_optim_wrapper
    from mmengine.optim.optimizer import amp_optimizer_wrapper
    from mmengine.registry import DefaultScope

    import cls_kd
    cls_kd.register_all_modules(init_default_scope=False)
    monkeypatch.setattr(amp_optimizer_wrapper, 'is_cuda_available',
                        lambda: True)  # the AMP wrapper, on CPU
    cfg = Config.fromfile(osp.join(ROOT, config))
    assert cfg.optim_wrapper.type == wrapper
    cfg.merge_from_dict({'optim_wrapper.skip_nonfinite': False})
    with DefaultScope.overwrite_default_scope('cls_kd'):
        built = build_optim_wrapper(nn.Linear(2, 2), cfg.optim_wrapper)
    assert type(built).__name__ == wrapper
    assert built.skip_nonfinite is False
