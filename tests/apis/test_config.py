"""load_config: how every tool reads its config (packaged names, options,
teacher paths, default scope, the one-line error for a missing file), and
that every tool goes through it."""
import argparse
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope

from cls_kd.apis import config_arg, load_config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
KD = 'kd/kd_resnet18-c16_vit-t4-p8_1xb64_digits.py'
SYNTH = 'dearkd/synthesis/deepinversion_resnet18-c16_digits.py'


def test_packaged_name_and_path_give_the_same_config(elsewhere, capsys):
    by_name = load_config(f'cls_kd::{KD}')
    found = osp.join(ROOT, 'cls_kd', '.mim', 'configs', KD)
    assert capsys.readouterr().out == f'cls_kd::{KD} -> {found}\n'
    by_path = load_config(osp.join(ROOT, 'configs', KD))
    assert osp.samefile(by_name.filename, by_path.filename)
    # The teacher is one file, reached through the package's link or not.
    teachers = [cfg.model.teacher.config for cfg in (by_name, by_path)]
    assert teachers[1] == osp.join(ROOT, 'configs', 'digits',
                                   'resnet18-c16_1xb64_digits.py')
    assert osp.samefile(*teachers)
    by_name.model.teacher.config = teachers[1]
    assert by_name.to_dict() == by_path.to_dict()


def test_options_are_merged_before_teacher_paths_resolve(tmp_path, elsewhere):
    exp = tmp_path / 'exp'
    exp.mkdir()
    (exp / 'my_teacher.py').write_text('model = dict(type="X")\n')
    (exp / 'my_kd.py').write_text(f"_base_ = ['cls_kd::{KD}']\n")
    cfg = load_config(
        str(exp / 'my_kd.py'), {
            'model.teacher.config': './my_teacher.py',
            'train_cfg.max_epochs': 3,
            'optim_wrapper.optimizer.lr': 0.5
        })
    assert cfg.model.teacher.config == str(exp / 'my_teacher.py')
    assert cfg.train_cfg == dict(by_epoch=True, max_epochs=3,
                                 val_interval=10)
    assert cfg.optim_wrapper.optimizer == dict(type='AdamW', lr=0.5,
                                               weight_decay=0.05)


def test_a_config_read_already_is_taken_as_it_is():
    cfg = Config.fromfile(osp.join(ROOT, 'configs', KD))
    cfg.model.losses.loss_kd.loss_weight = 7.0
    loaded = load_config(cfg, {'train_cfg.max_epochs': 2})
    assert loaded is cfg
    assert (cfg.model.losses.loss_kd.loss_weight,
            cfg.train_cfg.max_epochs) == (7.0, 2)


def test_the_default_scope_is_the_configs(tmp_path):
    (tmp_path / 'mmpre.py').write_text("default_scope = 'mmpretrain'\n")
    load_config(str(tmp_path / 'mmpre.py'))
    assert DefaultScope.get_current_instance().scope_name == 'mmpretrain'
    (tmp_path / 'none.py').write_text('model = None\n')
    load_config(str(tmp_path / 'none.py'))  # names none: cls_kd's
    assert DefaultScope.get_current_instance().scope_name == 'cls_kd'


def test_a_missing_config_is_one_line_naming_where_it_looked(elsewhere,
                                                             capsys):
    with pytest.raises(FileNotFoundError) as info:
        load_config('exp/nope.py')
    message = f"config 'exp/nope.py' not found; tried: " \
              f"{elsewhere / 'exp' / 'nope.py'}."
    assert str(info.value) == message
    # The tools print the same line as a usage error (config_arg).
    with pytest.raises(argparse.ArgumentTypeError) as usage:
        config_arg('exp/nope.py')
    assert str(usage.value) == message
    with pytest.raises(FileNotFoundError,
                       match=r"config 'cls_kd::kd/nope.py' not found; "
                       r'tried: .*/\.mim/configs/kd/nope\.py\.$'):
        load_config('cls_kd::kd/nope.py')


def test_synthesis_teacher_and_student_paths_resolve(tmp_path, elsewhere):
    configs = tmp_path / 'configs'
    configs.mkdir()
    (configs / 'teacher.py').write_text('model = dict(type="X")\n')
    (configs / 'student.py').write_text('model = dict(type="Y")\n')
    (configs / 'synth.py').write_text(
        'teacher = dict(config="./teacher.py", checkpoint=None)\n'
        'student = dict(config="student.py", checkpoint=None)\n')
    cfg = load_config(str(configs / 'synth.py'))
    assert (cfg.teacher.config, cfg.student.config) == (str(
        configs / 'teacher.py'), str(configs / 'student.py'))
    with pytest.raises(FileNotFoundError,
                       match=r"^Teacher 'student': config './nope.py' not "
                       r'found; tried: .*A relative teacher config='):
        load_config(str(configs / 'synth.py'),
                    {'student.config': './nope.py'})


class _Loaded(Exception):
    """Raised by the recording load_config: the tool stops there."""


# tool -> the arguments after its config.
TOOLS = {
    'tools/train.py': [],
    'tools/test.py': ['student.pth'],
    'tools/dump_teacher_outputs.py': ['--out', 'dump'],
    'tools/analysis/benchmark.py': ['--device', 'cpu'],
    'tools/analysis/distiller_summary.py': [],
    'tools/analysis/loss_shares.py': [],
    'tools/analysis/print_recipe.py': [],
    'tools/analysis/print_taps.py': [],
    'tools/analysis/visualize_distill.py': ['--student-ckpt', 's.pth'],
}


@pytest.mark.parametrize('tool', sorted(TOOLS) + ['tools/synthesize.py'])
def test_every_tool_loads_its_config_with_load_config(tool, tool_loader,
                                                      tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = tool_loader(tool)
    calls = []

    def recording(config, cfg_options=None):
        calls.append((config, cfg_options))
        raise _Loaded

    # The benchmark's own load_config adds its checks to the shared one.
    monkeypatch.setattr(
        module.apis if tool.endswith('benchmark.py') else module,
        'load_config', recording)
    config = osp.join(ROOT, 'configs',
                      SYNTH if tool == 'tools/synthesize.py' else KD)
    rest = TOOLS.get(tool, ['--out', 'synth'])
    with pytest.raises(_Loaded):
        module.main([config, *rest, '--cfg-options', 'train_cfg.x=1'])
    assert calls == [(config, {'train_cfg.x': 1})]
