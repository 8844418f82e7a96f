import numpy as np
import pytest
import torch
import torch.nn as nn

import cls_kd
from cls_kd.registry import MODELS
from cls_kd.utils import cast_numpy_scalars

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
