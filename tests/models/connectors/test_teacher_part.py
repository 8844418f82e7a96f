import pytest
import torch
from mmpretrain.structures import DataSample

import cls_kd
from cls_kd.models.connectors import TeacherPart
from cls_kd.registry import MODELS

cls_kd.register_all_modules()


def vit(width, depth):
    return dict(
        type='ImageClassifier',
        backbone=dict(
            type='VisionTransformer',
            arch=dict(
                embed_dims=width,
                num_layers=depth,
                num_heads=2,
                feedforward_channels=2 * width),
            img_size=32,
            patch_size=8),
        neck=None,
        head=dict(
            type='VisionTransformerClsHead', num_classes=10,
            in_channels=width))


def distiller(tpp=None):
    """Student tokens -> proj -> teacher block 1, matched to the teacher's
    own block-1 tokens (ScaleKD's teacher parameter perception)."""
    torch.manual_seed(0)
    return MODELS.build(
        dict(
            type='ClassificationDistiller',
            student=vit(32, 2),
            teacher=dict(config=vit(48, 3), checkpoint=None),
            taps=dict(
                s_tok=dict(path='backbone.layers.1'),
                t_tok=dict(model='teacher', path='backbone.layers.1')),
            connectors=dict(
                proj=dict(
                    type='LinearConnector', in_channels=32, out_channels=48),
                tpp=tpp or dict(type='TeacherPart',
                                paths=['backbone.layers.1'])),
            losses=dict(
                loss_tpp=dict(
                    type='PixelReconstructionLoss',
                    criterion='L2',
                    inputs=dict(pred='tpp(proj(s_tok))', target='t_tok'))),
            data_preprocessor=dict(
                num_classes=10, mean=[0., 0., 0.], std=[1., 1., 1.])))


def test_runs_teacher_module_with_grad_to_input_only():
    model = distiller()
    teacher = model.teachers['teacher']
    tpp = model.connectors['tpp']
    x = torch.randn(2, 17, 48, requires_grad=True)
    with torch.no_grad():  # the connector turns autograd back on
        out = tpp(x)
        expected = teacher.backbone.layers[1](x)
    assert out.requires_grad
    torch.testing.assert_close(out, expected)
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())


def test_distiller_gradients_and_ownership():
    model = distiller()
    model.train()
    teacher = model.teachers['teacher']
    assert not teacher.backbone.layers[1].training
    torch.manual_seed(1)
    losses = model.loss(
        torch.randn(2, 3, 32, 32),
        [DataSample().set_gt_label(k) for k in (1, 2)])
    assert losses['loss_tpp'] > 0
    losses['loss_tpp'].backward()
    assert all(p.grad is None for p in teacher.parameters())
    qkv = model.student.backbone.layers[1].attn.qkv.weight
    assert qkv.grad is not None and qkv.grad.abs().sum() > 0
    proj = model.connectors['proj'].proj.weight
    assert proj.grad is not None and proj.grad.abs().sum() > 0
    # The teacher block is no parameter, buffer or state of the distiller.
    teacher_ids = {id(p) for p in teacher.parameters()}
    assert not teacher_ids & {id(p) for p in model.parameters()}
    assert list(model.connectors['tpp'].parameters()) == []
    assert not [k for k in model.state_dict() if 'tpp' in k]


def test_bad_path_and_teacher_name():
    with pytest.raises(KeyError, match="'backbone.layers.1'"):
        distiller(dict(type='TeacherPart', paths='backbone.layer.1'))
    with pytest.raises(KeyError, match="No teacher 'other'"):
        distiller(
            dict(type='TeacherPart', paths='backbone.layers.1',
                 teacher='other'))


def test_needs_a_distiller():
    with pytest.raises(ValueError, match='built by a distiller'):
        TeacherPart(paths='backbone.layers.1')
