import os
from functools import partial
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmpretrain.structures import DataSample
from torch._dynamo.testing import CompileCounter

import cls_kd
from cls_kd.engine.hooks import CompileHook
from cls_kd.models.teachers.running import _teacher_taps_only, teacher_forward
from cls_kd.registry import MODELS
from cls_kd.utils import (
    cast_numpy_scalars,
    compile_model,
    compile_options,
    resolve_teacher_paths,
)

cls_kd.register_all_modules()


def tiny_vit():
    torch.manual_seed(0)
    return MODELS.build(
        dict(
            type='VisionTransformer',
            arch=dict(
                embed_dims=16, num_layers=2, num_heads=2,
                feedforward_channels=32),
            img_size=32,
            patch_size=8,
            drop_path_rate=0.1))


def drop_probs(model):
    return [m.drop_prob for m in model.modules() if hasattr(m, 'drop_prob')]


def test_casts_drop_path_rates():
    model = tiny_vit()
    # mmpretrain hands np.linspace entries to its 4 DropPath modules.
    assert [type(p) for p in drop_probs(model)] == [np.float64] * 4
    assert cast_numpy_scalars(model) == 4
    probs = drop_probs(model)
    assert [type(p) for p in probs] == [float] * 4
    assert probs == pytest.approx([0.0, 0.0, 0.1, 0.1])
    assert cast_numpy_scalars(model) == 0


def test_nothing_to_cast():
    assert cast_numpy_scalars(nn.Sequential(nn.Linear(2, 2))) == 0


@pytest.mark.slow
def test_no_graph_breaks_after_cast():
    model = tiny_vit()
    model.eval()  # mmpretrain's ViT.train() does not return the module
    x = torch.randn(1, 3, 32, 32)
    torch._dynamo.reset()
    try:
        assert torch._dynamo.explain(model)(x).graph_break_count > 0
        torch._dynamo.reset()
        cast_numpy_scalars(model)
        assert torch._dynamo.explain(model)(x).graph_break_count == 0
    finally:
        torch._dynamo.reset()


# ------------------------------------------------------ distillers compiled
VITKD = 'configs/vitkd/vitkd_deit3-6x128-p8_vit-4x32-p8_1xb64_digits.py'
VITKD_NKD = ('configs/vitkd/vitkd-nkd_deit3-6x128-p8_vit-4x32-p8_1xb64_'
             'digits.py')


def _distiller(repo_root, config=VITKD):
    cfg = resolve_teacher_paths(
        Config.fromfile(os.path.join(repo_root, config)))
    cfg.model.teacher.update(checkpoint=None, random_init=True)
    cfg.model.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    torch.manual_seed(0)
    return MODELS.build(cfg.model), cfg


def test_compile_options():
    assert compile_options(None) is None and compile_options(False) is None
    assert compile_options(True) == {}
    assert compile_options(dict(mode='max-autotune')) == dict(
        mode='max-autotune')
    with pytest.raises(ValueError, match=r"unknown torch.compile option\(s\) "
                       r"\['mdoe'\]"):
        compile_options(dict(mdoe='max-autotune'))
    with pytest.raises(ValueError, match='True, False or a dict'):
        compile_options('yes')


@pytest.mark.slow
@pytest.mark.parametrize('config', [
    VITKD,  # ViT -> ViT, the teacher read for its taps only
    'configs/dearkd/dearkd_resnet18-c16_vit-t4-p8_1xb64_digits.py',  # CNN
    # teacher's stage maps, convolutional-attention student blocks
    'configs/scalekd/scalekd_vit-4x64-p8_resnet18-c4_1xb64_digits.py',  # CNN
    # student's stage maps
])
def test_no_graph_breaks_with_the_distillers_hooks(repo_root, config):
    """The student's forward (with autograd) and the teacher's (without),
    with the distiller's taps installed and capturing, are one graph each;
    so is the teacher run for its taps only (what replaces the eager early
    stop under compile). Each captures what the eager forward captures."""
    model, _ = _distiller(repo_root, config)
    model.train()
    x = torch.randn(2, 3, *model.input_size)
    teacher = model.teachers['teacher']
    runs = [
        ('student', model.captures.student, model.student.backbone, True),
        ('teacher', model.captures.teachers['teacher'],
         partial(teacher_forward, teacher), False),
        ('teacher taps', model.captures.teachers['teacher'],
         partial(_teacher_taps_only, teacher), False),
    ]
    torch._dynamo.reset()
    try:
        for name, taps, fn, grad in runs:
            taps.disarm()
            taps.enable()
            with torch.set_grad_enabled(grad):
                fn(x)
            eager = sorted(taps.collect())
            assert eager, name  # the config taps this model
            taps.enable()
            with torch.set_grad_enabled(grad):
                explained = torch._dynamo.explain(fn)(x)
            assert sorted(taps.collect()) == eager, name
            assert explained.graph_break_count == 0, (
                name, explained.break_reasons)
            assert explained.graph_count == 1, name
    finally:
        torch._dynamo.reset()


@pytest.mark.slow
def test_compiled_teacher_taps_only_equals_the_eager_early_stop(repo_root):
    """A step that reads only the teacher's taps runs the compiled function
    that returns nothing: same captures as the eager run stopped after the
    last tap, and no logits."""
    model, _ = _distiller(repo_root)
    x = torch.randn(2, 3, 32, 32)
    eager = model._run_teacher('teacher', x, read_output=False)
    counter = CompileCounter()
    torch._dynamo.reset()
    try:
        model.compile_parts(backend=counter)
        compiled = model._run_teacher('teacher', x, read_output=False)
    finally:
        torch._dynamo.reset()
    # It ran the compiled taps-only function: one frame, one graph.
    assert (counter.frame_count, len(model._compiled_teachers)) == (1, 1)
    assert sorted(compiled) == sorted(eager) == ['t_block0', 't_block1',
                                                 't_last']
    for name in eager:
        assert torch.allclose(compiled[name], eager[name], atol=1e-6), name


@pytest.mark.slow
def test_compiled_distiller_trains_like_eager(repo_root, monkeypatch):
    """Two training steps of a compiled tiny ViTKD + NKD distiller (taps,
    the teacher's logits, connectors with a random mask, losses) give the
    eager losses to 1e-4 (relative). The second step's losses follow from
    the first update; weights are not compared one by one, as AdamW turns
    rounding noise in gradients that are zero in exact maths (the key bias
    of attention) into updates of the size of the learning rate."""
    # Inductor draws its own random numbers unless told to use eager's.
    monkeypatch.setattr(torch._inductor.config, 'fallback_random', True)
    torch.manual_seed(1)
    images = torch.randint(0, 256, (2, 4, 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 10, (2, 4))
    results = []
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    for compiled in (False, True):
        model, cfg = _distiller(repo_root, VITKD_NKD)
        model.train()
        model.set_progress(epoch=0, iter=0)
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
        if compiled:
            assert compile_model(model) == [
                'student.backbone', 'student.head', 'connectors.mimic0',
                'connectors.mimic1', 'connectors.gen',
                'losses.loss_vitkd_mimic', 'losses.loss_vitkd_gen',
                'losses.loss_nkd', "teachers['teacher']"
            ]
        losses = []
        torch.manual_seed(2)
        for step in range(2):
            data = dict(
                inputs=list(images[step]),
                data_samples=[
                    DataSample().set_gt_label(int(y)) for y in labels[step]
                ])
            losses.append({
                k: v.item()
                for k, v in model.train_step(data, wrapper).items()
            })
        results.append(losses)
    frames = torch._dynamo.utils.counters['frames']['ok']
    torch._dynamo.reset()
    assert frames > 0  # the second run did run compiled
    eager, comp = results
    assert eager[0] != eager[1]  # the first update changed the losses
    for a, b in zip(eager, comp):
        assert a.keys() == b.keys()
        for k in a:
            assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-6), k


def test_compile_hook_compiles_once_before_training(repo_root):
    model, _ = _distiller(repo_root)
    logs = []
    runner = SimpleNamespace(model=model,
                             logger=SimpleNamespace(info=logs.append))
    hook = CompileHook(backend='eager')
    assert model.student.backbone._compiled_call_impl is None
    hook.before_train(runner)
    assert model.student.backbone._compiled_call_impl is not None
    assert hook.compiled[0] == 'student.backbone'
    assert hook.compiled[-1] == "teachers['teacher']"
    assert logs == [
        "torch.compile (backend='eager'): " + ', '.join(hook.compiled) +
        '; the first iterations compile.'
    ]
    hook.before_train(runner)  # a second runner.train(): compiled already
    assert len(logs) == 1
    with pytest.raises(ValueError, match='unknown torch.compile option'):
        CompileHook(mdoe='max-autotune')


def test_compile_model_on_a_plain_classifier(tiny_vit):
    model = MODELS.build(tiny_vit())
    assert compile_model(model, backend='eager') == ['backbone', 'head']
    assert model.head._compiled_call_impl is not None
    with pytest.raises(ValueError, match='no backbone, neck or head'):
        compile_model(nn.Linear(2, 2))
