"""cls_kd.apis.inspection and .feature_maps: maps drawn by the tools, input
sizes, student checkpoints."""
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.config import Config

from cls_kd.apis import (
    attention_map,
    config_input_size,
    feature_map,
    last_attention_modules,
    load_student_weights,
)
from cls_kd.registry import MODELS
from cls_kd.utils import CheckpointError

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_attention_map_drops_the_prefix_tokens():
    row = torch.tensor([[[0.1, 0.2, 0.3, 0.1, 0.2, 0.1]]])  # cls, dist, 2x2
    attn = attention_map(row, prefix=2)
    np.testing.assert_allclose(attn.maps, [[[[0.3, 0.1], [0.2, 0.1]]]])
    assert attn.prefix == 2 and attn.cls_row.shape == (1, 1, 6)
    with pytest.raises(ValueError, match='attention row: 3 tokens do not '
                       'form a square grid.'):
        attention_map(row[..., 1:], prefix=2)


def test_feature_map_pca_of_rank_one_tokens():
    v = torch.tensor([0.6, -0.8, 0.0])  # unit direction
    a = torch.tensor([3.0, -1.0, -1.0, -1.0])  # zero mean over positions
    tokens = torch.cat([torch.full((1, 1, 3), 9.0),  # class token, dropped
                        (a[:, None] * v)[None]], dim=1)
    # The first component is ±v; the sign makes the largest entry (3)
    # positive, whichever sign the SVD returns.
    np.testing.assert_allclose(feature_map(tokens, prefix=1),
                               [[[3, -1], [-1, -1]]], atol=1e-9)
    np.testing.assert_allclose(feature_map(-tokens, prefix=1),
                               [[[3, -1], [-1, -1]]], atol=1e-9)
    # Channel mean: a * (0.6 - 0.8 + 0) / 3.
    np.testing.assert_allclose(feature_map(tokens, 1, 'mean'),
                               (a * -0.2 / 3).reshape(1, 2, 2), atol=1e-7)


def test_feature_map_of_a_cnn_map():
    x = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    np.testing.assert_allclose(feature_map(x, 0, 'mean'),
                               x.mean(1).numpy())
    with pytest.raises(ValueError, match=r'got shape \(2, 3\)'):
        feature_map(torch.zeros(2, 3), 0)


def test_last_attention_modules(tiny_vit):
    vit = MODELS.build(tiny_vit(depth=3))
    cnn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    assert last_attention_modules(dict(s=vit, t=cnn)) == [
        ('s', 'backbone.layers.2.attn')
    ]


def test_config_input_size_from_the_test_pipeline():
    # A CNN has no patch embedding: the digits pipeline resizes to 32x32.
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs/digits/resnet18-c16_1xb64_digits.py'))
    assert config_input_size(cfg, nn.Identity()) == (32, 32)
    cfg.test_dataloader.dataset.pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='ResizeEdge', scale=256, edge='short'),
        dict(type='CenterCrop', crop_size=(200, 224)),  # (w, h) in mmcv
    ]
    assert config_input_size(cfg, nn.Identity()) == (224, 200)


def test_load_student_weights_from_both_formats(tiny_vit, tmp_path):
    torch.manual_seed(0)
    source = MODELS.build(tiny_vit())
    state = source.state_dict()
    torch.save({'state_dict': {f'student.{k}': v for k, v in state.items()},
                'meta': {}}, tmp_path / 'distiller.pth')
    torch.save({'state_dict': state}, tmp_path / 'student.pth')
    for name in ('distiller.pth', 'student.pth'):
        target = MODELS.build(tiny_vit())
        assert load_student_weights(target, str(tmp_path / name)) == len(state)
        for key, value in target.state_dict().items():
            assert torch.equal(value, state[key]), (name, key)
    wider = MODELS.build(tiny_vit(width=48))
    with pytest.raises(CheckpointError, match='other shapes'):
        load_student_weights(wider, str(tmp_path / 'student.pth'))


@pytest.mark.slow
def test_config_with_widths_left_out_builds_for_the_tools(repo_root):
    """The ViTKD ImageNet configs leave their connector widths to the dry
    run; print_taps/visualize_distill build them too (real sizes)."""
    from cls_kd.apis import build_config_models, load_config
    cfg = load_config(osp.join(
        repo_root, 'configs/vitkd/vitkd_deit3-small_deit-tiny_8xb128_in1k.py'))
    distiller, models = build_config_models(cfg, random_teachers=True)
    proj = distiller.connectors['mimic0'].proj
    assert (proj.in_features, proj.out_features) == (192, 384)
    assert set(models) == {'student', 'teacher'}


def test_config_refused_by_the_dry_run_is_shown_with_written_widths(
        repo_root):
    """A tap the dry run refuses (a selector that does not fit); with the
    widths written out the tools still build the config, without the dry
    run, to show its modules."""
    from cls_kd.apis import build_config_models, load_config
    cfg = load_config(osp.join(
        repo_root,
        'configs/vitkd/vitkd_deit3-6x128-p8_vit-4x32-p8_1xb64_digits.py'))
    cfg.model.taps.s_block0.selector = 'dist_token'  # no such token
    with pytest.raises(ValueError, match='dist_token'):
        MODELS.build(dict(cfg.model, data_preprocessor=cfg.data_preprocessor,
                          teacher=dict(cfg.model.teacher, checkpoint=None,
                                       random_init=True)))
    distiller, _ = build_config_models(cfg, random_teachers=True)
    assert distiller.connectors['mimic0'].proj.out_features == 128
