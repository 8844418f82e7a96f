import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import load_from_local

import cls_kd
from cls_kd.registry import MODELS
from cls_kd.utils import (
    extract_state_dict,
    load_model_weights,
    patch_mmengine_torch_load,
)

cls_kd.register_all_modules()


class Classifier(nn.Module):

    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(3, 4)
        self.head = nn.Linear(4, 2)


class Wrapper(nn.Module):
    """Holds its network as ``model``, like mmpretrain's TimmClassifier."""

    def __init__(self):
        super().__init__()
        self.model = mlp()


def mlp():
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def save(obj, tmp_path, name='ckpt.pth'):
    path = str(tmp_path / name)
    torch.save(obj, path)
    return path


def assert_same_weights(model, reference):
    state = model.state_dict()
    for key, value in reference.state_dict().items():
        assert torch.equal(state[key], value), key


# ---------------------------------------------------- extract_state_dict
@pytest.mark.parametrize('wrapper', ['state_dict', 'model', 'module'])
def test_extract_unwraps_and_strips_ddp_prefix(wrapper):
    a, b = torch.zeros(1), torch.ones(1)
    checkpoint = {wrapper: {'module.a': a, 'b': b}, 'meta': {'epoch': 3}}
    state = extract_state_dict(checkpoint)
    assert list(state) == ['a', 'b']
    assert state['a'] is a and state['b'] is b


def test_extract_only_strips_leading_module():
    state = extract_state_dict({'backbone.module.w': torch.zeros(1)})
    assert list(state) == ['backbone.module.w']


def test_extract_prefix():
    checkpoint = dict(
        state_dict=OrderedDict([('student.backbone.w', torch.zeros(1)),
                                ('connectors.proj.w', torch.ones(1)),
                                ('student.head.b', torch.ones(2))]))
    state = extract_state_dict(checkpoint, prefix='student.')
    assert list(state) == ['backbone.w', 'head.b']
    with pytest.raises(KeyError, match="No key starts with 'teacher.'"):
        extract_state_dict(checkpoint, prefix='teacher.')


def test_extract_rejects_non_dict():
    with pytest.raises(TypeError, match='No state dict.*Tensor'):
        extract_state_dict(torch.zeros(1))


# ---------------------------------------------------- load_model_weights
def test_adds_backbone_prefix(tmp_path):
    torch.manual_seed(0)
    backbone = nn.Linear(3, 4)
    model = Classifier()
    result = load_model_weights(model, save(backbone.state_dict(), tmp_path))
    assert_same_weights(model.backbone, backbone)
    assert sorted(result['missing_keys']) == ['head.bias', 'head.weight']
    assert result['unexpected_keys'] == []


def test_adds_model_prefix(tmp_path):
    torch.manual_seed(0)
    raw = mlp()
    model = Wrapper()
    result = load_model_weights(model, save(raw.state_dict(), tmp_path))
    assert_same_weights(model.model, raw)
    assert result == dict(missing_keys=[], unexpected_keys=[])


def test_strips_model_prefix(tmp_path):
    torch.manual_seed(0)
    wrapped = Wrapper()
    model = mlp()
    result = load_model_weights(
        model, save(dict(state_dict=wrapped.state_dict()), tmp_path))
    assert_same_weights(model, wrapped.model)
    assert result == dict(missing_keys=[], unexpected_keys=[])


def test_mmpretrain_backbone_into_classifier(tmp_path):
    backbone_cfg = dict(
        type='VisionTransformer',
        arch=dict(
            embed_dims=16, num_layers=1, num_heads=2,
            feedforward_channels=32),
        img_size=32,
        patch_size=8)
    torch.manual_seed(0)
    backbone = MODELS.build(backbone_cfg)
    classifier = MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=backbone_cfg,
            head=dict(
                type='VisionTransformerClsHead', num_classes=4,
                in_channels=16)))
    result = load_model_weights(classifier,
                                save(backbone.state_dict(), tmp_path))
    assert_same_weights(classifier.backbone, backbone)
    assert sorted(result['missing_keys']) == [
        'head.layers.head.bias', 'head.layers.head.weight'
    ]


def test_reports_unexpected_and_missing(tmp_path):
    model = Classifier()
    state = dict(Classifier().state_dict())
    del state['head.bias']
    state['extra.weight'] = torch.zeros(1)
    result = load_model_weights(model, save(state, tmp_path))
    assert result == dict(
        missing_keys=['head.bias'], unexpected_keys=['extra.weight'])


def test_student_of_distiller_checkpoint(tmp_path):
    torch.manual_seed(0)
    student = Classifier()
    state = {f'student.{k}': v for k, v in student.state_dict().items()}
    state['connectors.proj.weight'] = torch.zeros(4, 4)
    model = Classifier()
    result = load_model_weights(
        model, save(dict(state_dict=state), tmp_path), prefix='student.')
    assert_same_weights(model, student)
    assert result == dict(missing_keys=[], unexpected_keys=[])


def test_checkpoint_sharing_no_key_is_an_error(tmp_path):
    path = save({'encoder.conv.weight': torch.zeros(1)}, tmp_path)
    with pytest.raises(KeyError, match='shares no key with the model '
                       'Classifier'):
        load_model_weights(Classifier(), path)


# ------------------------------------------------------ torch >= 2.6 loads
def mmengine_checkpoint(state_dict):
    """What mmengine's Runner saves: NumPy scalars and HistoryBuffers."""
    return dict(
        meta=dict(epoch=np.int64(3), lr=np.float64(0.1)),
        state_dict=state_dict,
        message_hub=dict(
            log_scalars=dict(loss=HistoryBuffer([1., 2., 3.], [1, 1, 1]))))


def test_mmengine_loads_its_checkpoints(tmp_path):
    path = save(mmengine_checkpoint({'w': torch.ones(2)}), tmp_path)
    # torch.load keeps its safe default everywhere else.
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)
    patch_mmengine_torch_load()  # idempotent
    checkpoint = load_from_local(path, map_location='cpu')
    assert checkpoint['meta']['lr'] == 0.1
    assert checkpoint['meta']['epoch'] == 3
    history = checkpoint['message_hub']['log_scalars']['loss']
    assert isinstance(history, HistoryBuffer)
    assert history.mean() == 2.0
    assert torch.equal(checkpoint['state_dict']['w'], torch.ones(2))


def test_load_model_weights_from_mmengine_checkpoint(tmp_path):
    torch.manual_seed(0)
    reference = Classifier()
    path = save(mmengine_checkpoint(reference.state_dict()), tmp_path)
    model = Classifier()
    load_model_weights(model, path)
    assert_same_weights(model, reference)
