"""Merged optimizer groups and the autocast wrapper."""
import torch
import torch.nn as nn
from mmengine.optim import build_optim_wrapper

import cls_kd
from cls_kd.engine import merge_param_groups, with_fused_default

cls_kd.register_all_modules()


def _vit():
    from cls_kd.registry import MODELS
    return MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=dict(
                type='VisionTransformer',
                arch=dict(embed_dims=16, num_layers=2, num_heads=2,
                          feedforward_channels=32),
                img_size=16, patch_size=8),
            head=dict(type='VisionTransformerClsHead', num_classes=3,
                      in_channels=16)))


def test_merge_param_groups_keeps_settings_and_order():
    a, b, c = (nn.Parameter(torch.zeros(1)) for _ in range(3))
    groups = [
        dict(params=[a], lr=1.0, weight_decay=0.0),
        dict(params=[b], lr=1.0, weight_decay=0.05),
        dict(params=[c], lr=1.0, weight_decay=0.0),
    ]
    merged = merge_param_groups(groups)
    assert [g['weight_decay'] for g in merged] == [0.0, 0.05]
    assert merged[0]['params'] == [a, c] and merged[1]['params'] == [b]


def test_constructor_merges_groups_with_same_updates():
    cfg = dict(
        optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
        paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0,
                           custom_keys={'.pos_embed': dict(decay_mult=0.0)}))
    torch.manual_seed(0)
    model_a, model_b = _vit(), _vit()
    model_b.load_state_dict(model_a.state_dict())
    plain = build_optim_wrapper(model_a, dict(cfg))
    merged = build_optim_wrapper(
        model_b, dict(cfg, constructor='MergedGroupsOptimWrapperConstructor'))
    n_params = len(list(model_a.parameters()))
    assert len(plain.optimizer.param_groups) == n_params
    assert len(merged.optimizer.param_groups) == 2
    decay = {id(p): g['weight_decay'] for g in plain.optimizer.param_groups
             for p in g['params']}
    names_a = dict(model_a.named_parameters())
    for g in merged.optimizer.param_groups:
        for name, p in model_b.named_parameters():
            if any(p is q for q in g['params']):
                assert decay[id(names_a[name])] == g['weight_decay'], name
    x = torch.randn(4, 3, 16, 16)
    for model, wrapper in ((model_a, plain), (model_b, merged)):
        for _ in range(2):
            loss = model(x, mode='tensor').square().mean()
            wrapper.update_params(loss)
    for (name, pa), pb in zip(model_a.named_parameters(),
                              model_b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-6), name


def test_autocast_wrapper_runs_bf16_on_cpu():
    model = nn.Linear(4, 4)
    wrapper = build_optim_wrapper(
        model,
        dict(type='AutocastOptimWrapper',
             optimizer=dict(type='SGD', lr=0.1)))
    with wrapper.optim_context(model):
        out = model(torch.randn(2, 4))
    assert out.dtype == torch.bfloat16
    wrapper.update_params(out.float().sum())
    assert model.weight.dtype == torch.float32


class _FakeParam:
    """What with_fused_default looks at, on a device this machine lacks."""

    def __init__(self, cuda=True, floating=True, requires_grad=True):
        self.is_cuda, self.requires_grad = cuda, requires_grad
        self._floating = floating

    def is_floating_point(self):
        return self._floating


def test_fused_by_default_on_cuda_only():
    adamw = dict(type='AdamW', lr=1e-3)
    on_cuda = [_FakeParam(), _FakeParam(requires_grad=False, cuda=False)]
    assert with_fused_default(adamw, on_cuda) == dict(adamw, fused=True)
    for kind in ('torch.optim.Adam', 'SGD'):
        assert with_fused_default(dict(adamw, type=kind),
                                  on_cuda)['fused'] is True
    # CPU (or mixed) parameters, another optimizer, an explicit choice: as is.
    assert with_fused_default(adamw, [_FakeParam(cuda=False)]) is adamw
    assert with_fused_default(adamw, [_FakeParam(), _FakeParam(
        cuda=False)]) is adamw
    assert with_fused_default(adamw, []) is adamw
    for cfg in (dict(type='RMSprop', lr=0.1), dict(adamw, fused=False),
                dict(adamw, foreach=True)):
        assert with_fused_default(cfg, on_cuda) is cfg


def test_constructor_builds_what_with_fused_default_says(monkeypatch):
    """The constructor hands its optimizer config through
    with_fused_default (here made to choose foreach=False, as it would
    choose fused=True on CUDA) and keeps its own config unchanged."""
    from cls_kd.engine.optimizers import merged_groups
    seen = []

    def choose(cfg, params):
        seen.append([p.shape for p in params])
        return dict(cfg, foreach=False)

    monkeypatch.setattr(merged_groups, 'with_fused_default', choose)
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    cfg = dict(
        optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
        constructor='MergedGroupsOptimWrapperConstructor')
    wrapper = build_optim_wrapper(model, cfg)
    assert wrapper.optimizer.defaults['foreach'] is False
    assert len(seen) == 1 and len(seen[0]) == 4
    assert 'foreach' not in cfg['optimizer']


def test_rmsproptf_builds_through_mmengine_and_steps():
    model = torch.nn.Linear(3, 2)
    wrapper = build_optim_wrapper(model, dict(optimizer=dict(
        type='RMSpropTF', lr=0.048, alpha=0.9, eps=1e-3, momentum=0.9,
        weight_decay=1e-5)))
    assert type(wrapper.optimizer).__name__ == 'RMSpropTF'
    assert wrapper.optimizer.defaults['eps'] == 1e-3
    before = model.weight.detach().clone()
    loss = model(torch.ones(4, 3)).sum()
    wrapper.update_params(loss)
    assert not torch.equal(before, model.weight)
    # TF form: square average starts at 1, so the first step is
    # lr * g / sqrt(0.9 + 0.1 g^2 + eps), not RMSprop's lr * g / |g| ...
    grad = torch.full((2, 3), 4.0)
    expected = 0.048 * grad / torch.sqrt(0.9 + 0.1 * grad ** 2 + 1e-3)
    torch.testing.assert_close(before - model.weight.detach(), expected,
                               rtol=1e-3, atol=1e-4)
