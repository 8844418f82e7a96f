import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.logging import HistoryBuffer, MMLogger
from mmengine.runner.checkpoint import load_from_local
from mmengine.runner.checkpoint import (
    load_state_dict as mmengine_load_state_dict,
)

import cls_kd
from cls_kd.registry import MODELS
from cls_kd.utils import (
    CheckpointError,
    extract_state_dict,
    load_model_weights,
    load_plain_student_hook,
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
class Backbone(nn.Module):
    """Holds only ``backbone``: a classifier whose head is elsewhere."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(3, 4)


def test_adds_backbone_prefix(tmp_path):
    torch.manual_seed(0)
    backbone = nn.Linear(3, 4)
    model = Backbone()
    result = load_model_weights(model, save(backbone.state_dict(), tmp_path))
    assert_same_weights(model.backbone, backbone)
    assert result == dict(missing_keys=[], unexpected_keys=[])


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


def test_mmpretrain_backbone_into_classifier_lacks_the_head(tmp_path):
    backbone_cfg = dict(
        type='VisionTransformer',
        arch=dict(
            embed_dims=16, num_layers=1, num_heads=2,
            feedforward_channels=32),
        img_size=32,
        patch_size=8)
    backbone = MODELS.build(backbone_cfg)
    classifier = MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=backbone_cfg,
            head=dict(
                type='VisionTransformerClsHead', num_classes=4,
                in_channels=16)))
    path = save(backbone.state_dict(), tmp_path)
    # The backbone keys are aligned (backbone. added): only the head lacks.
    with pytest.raises(CheckpointError) as info:
        load_model_weights(classifier, path)
    assert str(info.value) == (
        f"Checkpoint {path} lacks 2 of the ImageClassifier's keys: "
        'head.layers.head.weight, head.layers.head.bias. Is it a checkpoint '
        'of this architecture (depth, width, head)?')


def test_missing_keys_listed_first_ten_and_count(tmp_path):
    small = nn.Sequential(*[nn.Linear(2, 2) for _ in range(2)])
    large = nn.Sequential(*[nn.Linear(2, 2) for _ in range(8)])
    path = save(small.state_dict(), tmp_path)
    with pytest.raises(CheckpointError) as info:
        load_model_weights(large, path)
    message = str(info.value)
    assert 'lacks 12 of the Sequential\'s keys: 2.weight, 2.bias, ' in message
    assert '6.weight, 6.bias and 2 more.' in message
    assert '7.weight' not in message


def test_unexpected_keys_are_an_error(tmp_path):
    state = dict(Classifier().state_dict())
    state['extra.weight'] = torch.zeros(1)
    path = save(state, tmp_path)
    with pytest.raises(CheckpointError, match=r'has 1 key\(s\) that '
                       r'Classifier lacks: extra.weight\. .*'
                       r'allow_unexpected_keys=True ignores them'):
        load_model_weights(Classifier(), path)


def test_unexpected_keys_allowed_load_the_rest(tmp_path, monkeypatch):
    torch.manual_seed(0)
    reference = Classifier()
    state = dict(reference.state_dict())
    state['extra.weight'] = torch.zeros(1)
    warnings = []
    logger = MMLogger.get_instance('cls_kd')
    monkeypatch.setattr(logger, 'warning', warnings.append)
    model = Classifier()
    result = load_model_weights(model, save(state, tmp_path),
                                allow_unexpected_keys=True)
    assert result == dict(missing_keys=[], unexpected_keys=['extra.weight'])
    assert_same_weights(model, reference)
    assert len(warnings) == 1 and 'extra.weight (ignored)' in warnings[0]


def test_other_shapes_name_key_and_both_shapes(tmp_path):
    state = dict(Classifier().state_dict())
    state['head.weight'] = torch.zeros(5, 4)
    path = save(state, tmp_path)
    with pytest.raises(CheckpointError) as info:
        load_model_weights(Classifier(), path)
    assert str(info.value) == (
        f'Checkpoint {path} does not fit Classifier: 1 tensor(s) have other '
        'shapes (checkpoint vs model): head.weight: (5, 4) vs (2, 4). Is it '
        'a checkpoint of another architecture?')


@pytest.mark.parametrize('damage', ['garbage', 'truncated', 'empty'])
def test_unreadable_file_names_it(tmp_path, damage):
    path = save(Classifier().state_dict(), tmp_path)
    data = open(path, 'rb').read()
    data = {'garbage': b'not a checkpoint at all' * 10,
            'truncated': data[:len(data) // 2], 'empty': b''}[damage]
    with open(path, 'wb') as f:
        f.write(data)
    with pytest.raises(CheckpointError,
                       match=f'Cannot read checkpoint {path} '
                       r'\(missing, truncated or not a PyTorch checkpoint'):
        load_model_weights(Classifier(), path)


def test_missing_file_names_it(tmp_path):
    path = str(tmp_path / 'nope.pth')
    with pytest.raises(CheckpointError,
                       match=f'Cannot read checkpoint {path} .*nope.pth'):
        load_model_weights(Classifier(), path)


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


def test_distiller_checkpoint_without_prefix_suggests_it(tmp_path):
    state = {f'student.{k}': v for k, v in Classifier().state_dict().items()}
    state['connectors.proj.weight'] = torch.zeros(4, 4)
    path = save(dict(state_dict=state), tmp_path)
    with pytest.raises(CheckpointError, match="shares no key with the model "
                       "Classifier.*prefix='student.' takes its student"):
        load_model_weights(Classifier(), path)
    with pytest.raises(CheckpointError,
                       match=f"Checkpoint {path}: No key starts with "
                       "'teacher.'"):
        load_model_weights(Classifier(), path, prefix='teacher.')


def test_checkpoint_sharing_no_key_is_an_error(tmp_path):
    path = save({'encoder.conv.weight': torch.zeros(1)}, tmp_path)
    with pytest.raises(CheckpointError, match='shares no key with the model '
                       r"Classifier: checkpoint keys look like \['encoder"):
        load_model_weights(Classifier(), path)


# ------------------------------------------- plain student into a distiller
class Distiller(nn.Module):
    """What the hook needs of a distiller: a student and its own modules."""

    def __init__(self):
        super().__init__()
        self.student = Classifier()
        self.connectors = nn.ModuleDict(dict(proj=nn.Linear(4, 4)))
        self.register_load_state_dict_pre_hook(load_plain_student_hook)


@pytest.mark.parametrize('loader', ['torch', 'mmengine'])
def test_plain_student_checkpoint_loads_as_student(loader):
    torch.manual_seed(0)
    student = Classifier()
    distiller = Distiller()
    if loader == 'torch':
        result = distiller.load_state_dict(student.state_dict(), strict=False)
        assert sorted(result.missing_keys) == [
            'connectors.proj.bias', 'connectors.proj.weight'
        ]
        assert result.unexpected_keys == []
    else:  # what the Runner's load_from runs
        mmengine_load_state_dict(distiller, student.state_dict())
    assert_same_weights(distiller.student, student)


def test_plain_student_checkpoint_under_a_wrapper_prefix():
    torch.manual_seed(0)
    student = Classifier()
    wrapper = nn.Module()  # like EMA's AveragedModel: the model as `module`
    wrapper.module = Distiller()
    state = {f'module.{k}': v for k, v in student.state_dict().items()}
    wrapper.load_state_dict(state, strict=False)
    assert_same_weights(wrapper.module.student, student)


def test_distiller_checkpoint_is_left_alone():
    torch.manual_seed(0)
    reference = Distiller()
    distiller = Distiller()
    result = distiller.load_state_dict(reference.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert_same_weights(distiller, reference)


def test_checkpoint_of_neither_is_refused():
    with pytest.raises(CheckpointError) as info:
        Distiller().load_state_dict({'encoder.w': torch.zeros(1)},
                                    strict=False)
    assert str(info.value) == (
        'The checkpoint matches neither Distiller (keys under student., '
        "connectors.) nor its student (keys like ['backbone.bias', "
        "'backbone.weight', 'head.bias']): its keys look like "
        "['encoder.w'].")


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
