"""A teacher is built with its weights or not at all: no checkpoint, a
checkpoint of another architecture or an unreadable file is a config error
naming the teacher, the file and the offending keys; ``prefix`` takes the
student of a distiller checkpoint."""
import pytest
import torch
from mmengine.logging import MMLogger

import cls_kd
from cls_kd.models.distillers import DistillerConfigError
from cls_kd.models.teachers import build_teacher
from cls_kd.registry import MODELS

cls_kd.register_all_modules()


def resnet(depth=18, channels=16):
    """The digits teacher's CIFAR ResNet at another depth or width."""
    return dict(
        type='ImageClassifier',
        backbone=dict(
            type='ResNet_CIFAR',
            depth=depth,
            stem_channels=channels,
            base_channels=channels,
            num_stages=4,
            out_indices=(3, ),
            style='pytorch'),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=10,
                  in_channels=8 * channels))


def saved(model_cfg, tmp_path, name='teacher.pth'):
    """A model of ``model_cfg`` saved as mmengine does; returns both."""
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    path = str(tmp_path / name)
    torch.save(dict(state_dict=model.state_dict(), meta=dict(epoch=3)), path)
    return model, path


def distiller(tiny_vit, **kwargs):
    cfg = dict(
        type='ClassificationDistiller',
        student=tiny_vit(),
        data_preprocessor=dict(num_classes=10),
        losses=dict(
            loss_kd=dict(
                type='KDLoss',
                inputs=dict(logits_s='logits_s', logits_t='logits_t'))))
    return MODELS.build(dict(cfg, **kwargs))


# ------------------------------------------------------------ no weights
@pytest.mark.parametrize('single', [True, False])
def test_no_checkpoint_is_a_build_error(tiny_vit, single):
    spec = dict(config=tiny_vit(48, 3), checkpoint=None)
    teachers = dict(teacher=spec) if single else dict(
        teachers=dict(big=spec))
    option = 'model.teacher' if single else 'model.teachers.big'
    name = 'teacher' if single else 'big'
    with pytest.raises(DistillerConfigError) as info:
        distiller(tiny_vit, **teachers)
    assert str(info.value) == (
        f'Teacher {name!r} has no checkpoint: distilling from random '
        f'weights teaches nothing. Pass one with --cfg-options '
        f'{option}.checkpoint=<file> (or set random_init=True in the '
        f'teacher spec, for tests and benchmarks only).')


def test_random_init_warns_once(tiny_vit, monkeypatch):
    warnings = []
    monkeypatch.setattr(MMLogger.get_current_instance(), 'warning',
                        warnings.append)
    teacher, _ = build_teacher('teacher',
                               dict(config=tiny_vit(48, 3), random_init=True))
    assert not teacher.training
    assert warnings == [
        "Teacher 'teacher' keeps random weights (random_init=True): fine "
        'for tests and benchmarks, useless for distillation.'
    ]


def test_random_init_with_a_checkpoint_is_refused(tiny_vit):
    with pytest.raises(DistillerConfigError,
                       match="both checkpoint='t.pth' and random_init=True"):
        build_teacher('teacher', dict(config=tiny_vit(), checkpoint='t.pth',
                                      random_init=True))


def test_unknown_spec_key_lists_the_known_ones(tiny_vit):
    with pytest.raises(DistillerConfigError) as info:
        build_teacher('teacher', dict(config=tiny_vit(), strict=False))
    assert str(info.value) == (
        "Teacher 'teacher' must be dict(config=..., checkpoint=..., "
        '[allow_unexpected_keys, data_preprocessor, outputs, override, '
        "prefix, random_init, train_mode]); got keys ['config', 'strict'].")


# ------------------------------------------------------ strict checkpoints
def test_shallower_checkpoint_lists_missing_keys(tiny_vit, tmp_path):
    shallow, path = saved(tiny_vit(16, 6), tmp_path)
    deep_keys = set(MODELS.build(tiny_vit(16, 8)).state_dict())
    missing = len(deep_keys - set(shallow.state_dict()))
    assert missing > 10
    with pytest.raises(DistillerConfigError) as info:
        build_teacher('teacher', dict(config=tiny_vit(16, 8),
                                      checkpoint=path))
    message = str(info.value)
    assert message.startswith(
        f"Teacher 'teacher': Checkpoint {path} lacks {missing} of the "
        "ImageClassifier's keys: backbone.layers.6.")
    assert f'and {missing - 10} more.' in message
    assert 'backbone.layers.5.' not in message


def test_checkpoint_of_a_deeper_resnet_is_refused(tmp_path):
    resnet34, path = saved(resnet(34), tmp_path)
    with pytest.raises(DistillerConfigError) as info:
        build_teacher('teacher', dict(config=resnet(18), checkpoint=path))
    extra = len(set(resnet34.state_dict()) -
                set(MODELS.build(resnet(18)).state_dict()))
    assert str(info.value).startswith(
        f"Teacher 'teacher': Checkpoint {path} has {extra} key(s) that "
        'ImageClassifier lacks: backbone.layer1.2.conv1.weight, ')
    assert str(info.value).endswith(
        '(allow_unexpected_keys=True ignores them.)')


def test_allow_unexpected_keys_loads_the_shared_ones(tmp_path, monkeypatch):
    resnet34, path = saved(resnet(34), tmp_path)
    warnings = []
    monkeypatch.setattr(MMLogger.get_instance('cls_kd'), 'warning',
                        warnings.append)
    teacher, _ = build_teacher(
        'teacher',
        dict(config=resnet(18), checkpoint=path, allow_unexpected_keys=True))
    reference = resnet34.state_dict()
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, reference[key]), key
    assert len(warnings) == 1
    assert 'backbone.layer1.2.conv1.weight' in warnings[0]


def test_other_shapes_name_teacher_file_key_and_shapes(tmp_path):
    _, path = saved(resnet(18, channels=16), tmp_path)
    with pytest.raises(DistillerConfigError) as info:
        build_teacher('wide', dict(config=resnet(18, channels=32),
                                   checkpoint=path))
    message = str(info.value)
    assert message.startswith(
        f"Teacher 'wide': Checkpoint {path} does not fit ImageClassifier: ")
    assert ('(checkpoint vs model): backbone.conv1.weight: (16, 3, 3, 3) vs '
            '(32, 3, 3, 3), backbone.bn1.weight: (16,) vs (32,), ') in message
    assert 'size mismatch' not in message


@pytest.mark.parametrize('damage', ['garbage', 'truncated'])
def test_unreadable_checkpoint_names_teacher_and_file(tmp_path, damage):
    _, path = saved(resnet(18), tmp_path)
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(b'\x00garbage' * 64 if damage == 'garbage' else
                data[:len(data) // 3])
    with pytest.raises(DistillerConfigError) as info:
        build_teacher('teacher', dict(config=resnet(18), checkpoint=path))
    assert str(info.value).startswith(
        f"Teacher 'teacher': Cannot read checkpoint {path} (missing, "
        'truncated or not a PyTorch checkpoint?): ')


# ------------------------------------------------- a student as the teacher
def test_prefix_takes_the_student_of_a_distiller_checkpoint(
        tiny_vit, tmp_path):
    torch.manual_seed(0)
    first = distiller(
        tiny_vit,
        teacher=dict(config=tiny_vit(48, 3), random_init=True),
        taps=dict(s_tok=dict(path='backbone.ln1', selector='patch_tokens'),
                  t_tok=dict(model='teacher', path='backbone.ln1',
                             selector='patch_tokens')),
        connectors=dict(proj=dict(type='LinearConnector', in_channels=32,
                                  out_channels=48)),
        losses=dict(loss_mse=dict(type='FeatureMSELoss',
                                  inputs=dict(preds='proj(s_tok)',
                                              targets='t_tok'))))
    path = str(tmp_path / 'epoch_3.pth')
    state = first.state_dict()
    assert any(k.startswith('connectors.') for k in state)
    torch.save(dict(state_dict=state, meta=dict(epoch=3)), path)
    spec = dict(config=tiny_vit(), checkpoint=path)
    with pytest.raises(DistillerConfigError,
                       match="prefix='student.' takes its student"):
        build_teacher('next', spec)
    teacher, _ = build_teacher('next', dict(spec, prefix='student.'))
    first.student.eval()
    inputs = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = first.student(inputs, mode='tensor')
        assert torch.equal(teacher(inputs, mode='tensor'), expected)


def test_missing_config_file_lists_where_it_looked(tiny_vit, tmp_path,
                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as info:
        build_teacher('teacher', dict(config='nope.py', random_init=True))
    assert str(info.value) == (
        f"Teacher 'teacher': config 'nope.py' not found; tried: "
        f'{tmp_path / "nope.py"}.')
