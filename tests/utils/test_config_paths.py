"""Teacher config paths resolve against the config that names them, and
``cls_kd::`` configs are found (as a teacher and as a ``_base_``)."""
import glob
import os.path as osp

import pytest
import yaml
from mmengine.config import Config

import cls_kd
from cls_kd.models.teachers import build_teacher
from cls_kd.registry import MODELS
from cls_kd.utils import (
    installed_path,
    resolve_config_path,
    resolve_teacher_paths,
)

cls_kd.register_all_modules()

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TEACHER = 'digits/resnet18-c16_1xb64_digits.py'
KD = 'kd/kd_resnet18-c16_vit-t4-p8_1xb64_digits.py'

# A teacher next to the user's config: 8 base channels, unlike ours (16).
MY_TEACHER = """
model = dict(
    type='ImageClassifier',
    backbone=dict(type='ResNet_CIFAR', depth=18, stem_channels=8,
                  base_channels=8, out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=10, in_channels=64))
"""


def test_existing_path_is_kept(tmp_path, monkeypatch):
    (tmp_path / 'a.py').write_text('model = None\n')
    monkeypatch.chdir(tmp_path)
    assert resolve_config_path('a.py', '/nowhere') == 'a.py'


def test_relative_to_the_config_directory(tmp_path, elsewhere):
    (tmp_path / 'exp').mkdir()
    (tmp_path / 'exp' / 'my_teacher.py').write_text('model = None\n')
    assert resolve_config_path('./my_teacher.py', str(tmp_path / 'exp')) \
        == str(tmp_path / 'exp' / 'my_teacher.py')


def test_not_found_lists_the_paths_tried(tmp_path, elsewhere):
    with pytest.raises(FileNotFoundError) as info:
        resolve_config_path('./nope.py', str(tmp_path / 'exp'))
    assert str(info.value) == (
        f"config './nope.py' not found; tried: {elsewhere / 'nope.py'}, "
        f"{tmp_path / 'exp' / 'nope.py'}.")


def test_users_teacher_next_to_their_config(tmp_path, elsewhere):
    exp = tmp_path / 'exp'
    exp.mkdir()
    (exp / 'my_teacher.py').write_text(MY_TEACHER)
    (exp / 'my_kd.py').write_text(
        f"_base_ = ['cls_kd::{KD}']\n"
        "model = dict(teacher=dict(config='./my_teacher.py', "
        'random_init=True))\n')
    cfg = resolve_teacher_paths(Config.fromfile(str(exp / 'my_kd.py')))
    assert cfg.model.teacher.config == str(exp / 'my_teacher.py')
    cfg.model.data_preprocessor = cfg.data_preprocessor
    model = MODELS.build(cfg.model)
    assert model.teachers['teacher'].backbone.base_channels == 8


def test_every_teacher_of_teachers_is_resolved(tmp_path, elsewhere):
    (tmp_path / 'a.py').write_text(MY_TEACHER)
    (tmp_path / 'kd.py').write_text(
        "model = dict(teachers=dict(a=dict(config='a.py'), "
        f"b=dict(config='cls_kd::{TEACHER}'), "
        "c=dict(config=dict(type='ImageClassifier'))))\n")
    cfg = resolve_teacher_paths(Config.fromfile(str(tmp_path / 'kd.py')))
    teachers = cfg.model.teachers
    assert teachers.a.config == str(tmp_path / 'a.py')
    assert teachers.b.config == f'cls_kd::{TEACHER}'  # resolved when built
    assert teachers.c.config == dict(type='ImageClassifier')
    cfg.model.teachers.a.config = 'nope.py'
    with pytest.raises(FileNotFoundError) as info:
        resolve_teacher_paths(cfg)
    message = str(info.value)
    assert message.startswith("Teacher 'a': config 'nope.py' not found; "
                              'tried: ')
    # The fix for a path written in a _base_ file is named.
    assert f'the config you ran ({tmp_path})' in message
    assert "config='{{fileDirname}}/nope.py'" in message


def test_our_base_files_name_teachers_relative_to_themselves(elsewhere):
    cfg = Config.fromfile(osp.join(ROOT, 'configs', KD))
    path = cfg.model.teacher.config
    assert osp.isabs(path) and osp.samefile(
        path, osp.join(ROOT, 'configs', TEACHER))


def test_package_teacher_config(elsewhere):
    path = resolve_config_path(f'cls_kd::{TEACHER}')
    assert osp.samefile(path, osp.join(ROOT, 'configs', TEACHER))
    teacher, preprocessor = build_teacher(
        'teacher', dict(config=f'cls_kd::{TEACHER}', random_init=True))
    assert type(teacher.backbone).__name__ == 'ResNet_CIFAR'
    assert preprocessor['mean'] == [77.9, 77.9, 77.9]  # digits' own
    with pytest.raises(FileNotFoundError, match="config 'cls_kd::nope.py' "
                       'not found; tried: .*/cls_kd/.mim/configs/nope.py'):
        resolve_config_path('cls_kd::nope.py')


def test_package_base_config(tmp_path, elsewhere):
    (tmp_path / 'my_kd.py').write_text(
        f"_base_ = ['cls_kd::{KD}']\n"
        'model = dict(losses=dict(loss_kd=dict(temperature=2.0)))\n')
    cfg = Config.fromfile(str(tmp_path / 'my_kd.py'))
    assert cfg.model.type == 'ClassificationDistiller'
    assert cfg.model.losses.loss_kd.temperature == 2.0
    assert cfg.model.losses.loss_kd.type == 'KDLoss'
    assert osp.isfile(cfg.model.teacher.config)


def test_installed_path_finds_the_editable_package():
    assert installed_path('cls_kd') == osp.dirname(cls_kd.__file__)


def test_package_ships_configs_and_model_index():
    mim = osp.join(ROOT, 'cls_kd', '.mim')
    assert osp.samefile(osp.join(mim, 'configs'), osp.join(ROOT, 'configs'))
    with open(osp.join(mim, 'model-index.yml')) as f:
        imported = yaml.safe_load(f)['Import']
    metafiles = sorted(
        osp.relpath(p, ROOT)
        for p in glob.glob(osp.join(ROOT, 'configs', '*', 'metafile.yml')))
    # A listed metafile that is gone breaks every `cls_kd::` path.
    assert sorted(imported) == metafiles, 'update model-index.yml'
