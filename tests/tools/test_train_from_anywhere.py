"""tools/train.py runs from any directory: the teacher configs of our
configs and of a user's config are found relative to the config naming
them."""
import importlib.util
import os
import os.path as osp
import subprocess
import sys

import pytest
from mmengine.config import Config
from mmengine.runner import Runner

import cls_kd

cls_kd.register_all_modules(init_default_scope=False)

KD_CFG = 'configs/kd/kd_resnet18-c16_vit-t4-p8_1xb64_digits.py'


def _train_tool(repo_root):
    path = osp.join(repo_root, 'tools', 'train.py')
    spec = importlib.util.spec_from_file_location('tool_train', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _small_run_options(digits_root):
    """3 epochs of 2 iterations, validation on 16 images."""
    options = [
        f'train_dataloader.dataset.data_root={digits_root}',
        f'val_dataloader.dataset.data_root={digits_root}',
        'train_dataloader.dataset.indices=16',
        'val_dataloader.dataset.indices=16', 'train_dataloader.batch_size=8',
        'train_cfg.max_epochs=3', 'train_cfg.val_interval=3'
    ]
    for loader in ('train_dataloader', 'val_dataloader'):
        options += [f'{loader}.num_workers=0',
                    f'{loader}.persistent_workers=False']
    return options + ['model.teacher.random_init=True']


@pytest.mark.slow
def test_train_from_another_directory(repo_root, digits_root, tmp_path):
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    work_dir = tmp_path / 'work'
    proc = subprocess.run(
        [
            sys.executable,
            osp.join(repo_root, 'tools', 'train.py'),
            osp.join(repo_root, KD_CFG), '--work-dir',
            str(work_dir), '--cfg-options', *_small_run_options(digits_root)
        ],
        cwd=elsewhere,
        env=dict(os.environ, OMP_NUM_THREADS='1'),
        capture_output=True,
        text=True,
        timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert osp.exists(work_dir / 'epoch_3.pth')
    dumped = Config.fromfile(str(work_dir / osp.basename(KD_CFG)))
    assert osp.samefile(
        dumped.model.teacher.config,
        osp.join(repo_root, 'configs/digits/resnet18-c16_1xb64_digits.py'))


def test_users_teacher_config_next_to_their_config(repo_root, digits_root,
                                                   tmp_path, monkeypatch):
    exp = tmp_path / 'exp'
    exp.mkdir()
    (exp / 'my_teacher.py').write_text(
        "_base_ = ['cls_kd::digits/resnet18-c16_1xb64_digits.py']\n"
        'model = dict(backbone=dict(base_channels=8, stem_channels=8), '
        'head=dict(in_channels=64))\n')
    (exp / 'my_kd.py').write_text(
        "_base_ = ['cls_kd::kd/kd_resnet18-c16_vit-t4-p8_1xb64_digits.py']\n"
        "model = dict(teacher=dict(config='./my_teacher.py'))\n")
    monkeypatch.chdir(tmp_path)  # ./my_teacher.py is not in the cwd
    train = _train_tool(repo_root)
    args = train.parse_args([
        'exp/my_kd.py', '--work-dir',
        str(tmp_path / 'work'), '--cfg-options',
        *_small_run_options(digits_root)
    ])
    cfg = train.merge_args(Config.fromfile(args.config), args)
    assert cfg.model.teacher.config == str(exp / 'my_teacher.py')
    runner = Runner.from_cfg(cfg)
    assert runner.model.teachers['teacher'].backbone.base_channels == 8
