"""Connector widths left out of a config are filled from the shapes the
build-time dry run measures; written ones are checked against them."""
import copy
import json
import os.path as osp

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config

import cls_kd
from cls_kd.errors import DistillerConfigError
from cls_kd.models.connectors import (
    ConvConnector,
    CrossAttentionProjector,
    LinearConnector,
)
from cls_kd.registry import MODELS

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))
VITKD = 'configs/vitkd/vitkd_deit3-6x128-p8_vit-4x32-p8_1xb64_digits.py'
SCALEKD = 'configs/scalekd/scalekd_vit-4x64-p8_resnet18-c4_1xb64_digits.py'
ATTN = ('configs/attndistill/'
        'attndistill_vit-4x64-p8_vit-4x32-p8_1xb64_digits.py')
WIDTHS = ('in_channels', 'out_channels', 'in_size')

cls_kd.register_all_modules()


def _model_cfg(config):
    cfg = Config.fromfile(osp.join(ROOT, config))
    model = cfg.model
    for spec in [model.get('teacher')] + list(
            (model.get('teachers') or {}).values()):
        if spec:  # no downloads: random teachers
            spec['checkpoint'], spec['random_init'] = None, True
    model.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    return model


def _build(model_cfg):
    torch.manual_seed(0)
    return MODELS.build(copy.deepcopy(model_cfg))


def _left_out(model_cfg, names=None):
    """``model_cfg`` with every width of ``names`` (all connectors) gone."""
    model_cfg = copy.deepcopy(model_cfg)
    for name, spec in model_cfg.connectors.items():
        if names is None or name in names:
            for key in WIDTHS:
                spec.pop(key, None)
    return model_cfg


def _shapes(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_standalone_connector_waits_for_its_widths():
    proj = LinearConnector()
    assert proj.pending_widths == ['in_channels', 'out_channels']
    assert list(proj.parameters()) == []
    with pytest.raises(RuntimeError, match=r"\['in_channels', "
                       r"'out_channels'\] were left out and never measured"):
        proj(torch.zeros(2, 5, 4))
    x, target = torch.zeros(2, 5, 4), torch.zeros(2, 5, 6)
    measured = proj.measure_widths([x], target)
    assert measured == dict(in_channels=4, out_channels=6)
    assert proj.settle_widths(measured) == ['in_channels', 'out_channels']
    assert proj.proj.weight.shape == (6, 4)
    assert proj(x).shape == (2, 5, 6)
    # Equal widths: no projection, as with written widths.
    same = LinearConnector(in_channels=4)
    same.settle_widths(same.measure_widths([x], torch.zeros(2, 5, 4)))
    assert isinstance(same.proj, nn.Identity)


def test_standalone_written_width_is_checked():
    proj = LinearConnector(8, 6)
    with pytest.raises(ValueError,
                       match=r'in_channels=8 is written, but the dry run '
                       r'measured 4\. Write the measured value, or leave '
                       r'in_channels out'):
        proj.settle_widths(dict(in_channels=4, out_channels=6))
    assert proj.settle_widths(dict(in_channels=8, out_channels=6)) == []


def test_conv_and_projector_measure_their_layouts():
    conv = ConvConnector(norm=True)
    conv.settle_widths(conv.measure_widths(
        [torch.zeros(2, 3, 5, 5)], torch.zeros(2, 7, 5, 5)))
    assert conv.layers[0].weight.shape == (7, 3, 1, 1)
    assert conv.layers[1].num_features == 7
    # Tokens on a square grid tell the grid; the queries tell C_t.
    cap = CrossAttentionProjector(num_heads=2, learnable_query=False)
    cap.settle_widths(cap.measure_widths(
        [torch.zeros(2, 9, 4), torch.zeros(2, 4, 6)], None))
    assert (cap.in_channels, cap.out_channels, cap.in_size) == (4, 6, (3, 3))
    assert cap.pos_embed.shape == (1, 4, 3, 3)
    # A written non-square grid of as many tokens stands.
    cap = CrossAttentionProjector(num_heads=2, in_size=(2, 6),
                                  query_size=1)
    assert cap.measure_widths([torch.zeros(2, 12, 4)],
                              torch.zeros(2, 1, 8))['in_size'] == (2, 6)
    with pytest.raises(ValueError, match='12 tokens do not form a square '
                       r'grid; give in_size=\(H, W\)'):
        CrossAttentionProjector(num_heads=2, query_size=1).measure_widths(
            [torch.zeros(2, 12, 4)], None)


def test_vitkd_widths_left_out_build_the_written_shapes():
    """Same state-dict keys and shapes as the written widths, and as the
    checkpoints recorded before the distiller family (tests/data); a
    checkpoint of the written-out config loads strictly."""
    written_cfg = _model_cfg(VITKD)
    left_cfg = _left_out(written_cfg)
    assert 'in_channels' not in left_cfg.connectors.mimic0
    written, left = _build(written_cfg), _build(left_cfg)
    with open(osp.join(ROOT, 'tests', 'data',
                       'distiller_state_dict_keys_before_core_v2.json')) as f:
        recorded = json.load(f)[VITKD]
    assert _shapes(left) == _shapes(written) == {
        k: tuple(v) for k, v in recorded.items()}
    assert _shapes(left)['connectors.gen.mask_token'] == (1, 1, 128)
    assert _shapes(left)['connectors.mimic0.proj.weight'] == (128, 32)
    left.load_state_dict(written.state_dict(), strict=True)
    for key, value in written.state_dict().items():
        assert torch.equal(left.state_dict()[key], value), key
    # Built in the dry run (eval), then back in the distiller's mode.
    assert all(m.training for m in left.connectors.modules())
    trainable = {n for n, p in left.named_parameters() if p.requires_grad}
    assert trainable == {
        n for n, p in written.named_parameters() if p.requires_grad}
    assert 'connectors.gen.generation.2.weight' in trainable


def test_scalekd_projectors_measure_width_grid_and_queries():
    """cap4's C_t comes from its queries, cap3's grid from the student map;
    cap3's C_t stays written (its output feeds the teacher part)."""
    written_cfg = _model_cfg(SCALEKD)
    left_cfg = _left_out(written_cfg, ('cap4', 'cap4_alt'))
    for name in ('cap3', 'cap3_alt'):
        for key in ('in_channels', 'in_size'):
            left_cfg.connectors[name].pop(key)
    written, left = _build(written_cfg), _build(left_cfg)
    assert _shapes(left) == _shapes(written)
    assert (left.connectors.cap4.in_channels, left.connectors.cap4.in_size,
            left.connectors.cap4.out_channels) == (32, (4, 4), 64)
    assert left.connectors.cap3.in_size == (8, 8)


def test_attndistill_projector_widths_left_out():
    written_cfg = _model_cfg(ATTN)
    written, left = _build(written_cfg), _build(_left_out(written_cfg))
    assert _shapes(left) == _shapes(written)


def test_wrong_written_width_names_connector_key_and_values():
    cfg = _model_cfg(VITKD)
    cfg.connectors.mimic0.in_channels = 48
    with pytest.raises(DistillerConfigError) as info:
        _build(cfg)
    message = str(info.value)
    assert ("Connector 'mimic0' (LinearConnector) in 'mimic0(s_block0)': "
            'in_channels=48 is written, but the dry run measured 32. Write '
            'the measured value, or leave in_channels out to take it.'
            ) in message
    assert "Input s_block0 Tensor(2, 16, 32)" in message
    assert "its output is compared with 't_block0' Tensor(2, 16, 128)" \
        in message
    cfg = _model_cfg(VITKD)
    cfg.connectors.gen.out_channels = 64
    with pytest.raises(DistillerConfigError,
                       match=r"Connector 'gen' \(ViTKDGenerator\) in "
                       r"'gen\(s_last\)': out_channels=64 is written, but "
                       r'the dry run measured 128'):
        _build(cfg)


def test_width_that_cannot_be_measured_is_an_error():
    # proj1 feeds proj2: no loss compares proj1's output with a target.
    cfg = _left_out(_model_cfg(VITKD), ('mimic0', ))
    cfg.connectors.mimic0_in = dict(type='LinearConnector', in_channels=32,
                                    out_channels=32, identity_if_equal=False)
    cfg.losses.loss_vitkd_mimic.inputs.preds[0] = 'mimic0_in(mimic0(s_block0))'
    with pytest.raises(DistillerConfigError,
                       match=r"Connector 'mimic0' \(LinearConnector\) in "
                       r"'mimic0\(s_block0\)': out_channels left out, and "
                       r'this call does not tell it: write out_channels in '
                       r'the config\. Input s_block0 Tensor\(2, 16, 32\); '
                       r'no loss compares its output with a target\.'):
        _build(cfg)
    # A connector on something that is not a map.
    cfg = _model_cfg(VITKD)
    cfg.connectors.mimic0 = dict(type='ConvConnector')
    with pytest.raises(DistillerConfigError,
                       match=r"Connector 'mimic0' \(ConvConnector\) in "
                       r"'mimic0\(s_block0\)': its input is not a map \(B, "
                       r'C, H, W\): Tensor\(2, 16, 32\)'):
        _build(cfg)


def test_left_out_widths_need_the_dry_run_and_a_call():
    cfg = _left_out(_model_cfg(VITKD), ('gen', ))
    cfg.dry_run = False
    with pytest.raises(DistillerConfigError,
                       match=r"left out and not measured: 'gen' "
                       r"\(ViTKDGenerator\): \['in_channels', "
                       r"'out_channels'\]\. dry_run=False; write them"):
        _build(cfg)
    cfg = _model_cfg(VITKD)
    cfg.connectors.unused = dict(type='LinearConnector', out_channels=8)
    with pytest.raises(DistillerConfigError,
                       match=r"'unused' \(LinearConnector\): "
                       r"\['in_channels'\]\. No loss term called them"):
        _build(cfg)


def test_target_passes_through_layout_connectors():
    """``pool(proj(to_map(s)))`` compared with a map: proj's output
    channels are the target's (MapPool keeps channels)."""
    cfg = _model_cfg(VITKD)
    cfg.connectors = dict(
        to_map=dict(type='TokensToMap'),
        proj=dict(type='ConvConnector', kernel_size=3),
        pool=dict(type='MapPool', size=2),
        to_map_t=dict(type='TokensToMap'),
    )
    cfg.losses = dict(loss_map=dict(
        type='FeatureMSELoss',
        inputs=dict(preds='pool(proj(to_map(s_block0)))',
                    targets='pool(to_map_t(t_block0))')))
    for name in ('s_block1', 's_last', 't_block1', 't_last'):
        cfg.taps.pop(name)
    model = _build(cfg)
    assert model.connectors.proj.layers[0].weight.shape == (128, 32, 3, 3)
