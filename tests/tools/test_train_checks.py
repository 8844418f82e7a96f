"""tools/train.py and tools/test.py before the Runner: a 1-epoch smoke run
of a 40-epoch digits config, --auto-scale-lr, --resume with nothing to
resume, and a missing data folder, from any working directory."""
import importlib.util
import os.path as osp

import pytest

KD_CFG = 'configs/kd/kd_resnet18-c16_vit-t4-p8_1xb64_digits.py'
STUDENT_CFG = 'configs/digits/vit-t4-p8_1xb64_digits.py'


def _tool(repo_root, name):
    spec = importlib.util.spec_from_file_location(
        f'tool_{name}', osp.join(repo_root, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _data_options(digits_root, images=16, batch_size=16):
    options = [
        'train_cfg.max_epochs=1', f'train_dataloader.batch_size={batch_size}',
        f'train_dataloader.dataset.indices={images}',
        'val_dataloader.dataset.indices=16'
    ]
    for loader in ('train_dataloader', 'val_dataloader'):
        options += [
            f'{loader}.dataset.data_root={digits_root}',
            f'{loader}.num_workers=0', f'{loader}.persistent_workers=False'
        ]
    return options


def test_one_epoch_smoke_run_of_a_digits_distiller(repo_root, digits_root,
                                                   tmp_path, capsys):
    train = _tool(repo_root, 'train')
    runner = train.main([
        osp.join(repo_root, KD_CFG), '--work-dir', str(tmp_path),
        '--cfg-options', 'model.teacher.random_init=True'
    ] + _data_options(digits_root))
    out = capsys.readouterr().out
    assert 'param_scheduler fitted to max_epochs=1: LinearLR end 2 -> 1' in (
        out)
    assert ('param_scheduler fitted to max_epochs=1: CosineAnnealingLR '
            '(begin=2) dropped') in out
    assert runner.epoch == 1
    assert osp.isfile(tmp_path / 'epoch_1.pth')
    assert any('accuracy' in k for k in runner.message_hub.log_scalars)


def test_auto_scale_lr_on_a_digits_config(repo_root, digits_root, tmp_path,
                                          capsys):
    train = _tool(repo_root, 'train')
    runner = train.main([
        osp.join(repo_root, STUDENT_CFG), '--work-dir', str(tmp_path),
        '--auto-scale-lr', '--no-validate', '--cfg-options'
    ] + _data_options(digits_root, images=32, batch_size=32))
    groups = runner.optim_wrapper.optimizer.param_groups
    # lr 2e-3 is for 64 images a step; 32 a step here.
    assert groups and all(
        g['initial_lr'] == pytest.approx(1e-3, rel=1e-9) for g in groups)
    assert '--auto-scale-lr: lr 0.002 -> 0.001 (x0.5)' in capsys.readouterr(
    ).out
    # What the log shows as base_lr is the scaled lr too (mmengine scales
    # only the groups).
    assert len(groups) > 1  # base_lr is logged for several groups
    base = runner.optim_wrapper.base_param_settings
    assert base['initial_lr'] == pytest.approx(1e-3, rel=1e-9)
    logged = runner.message_hub.get_scalar
    assert logged('train/base_lr').current() == pytest.approx(
        logged('train/lr').current(), rel=1e-9)  # both in warm-up


def test_resume_with_nothing_to_resume_fails_before_training(
        repo_root, digits_root, tmp_path):
    train = _tool(repo_root, 'train')
    work_dir = tmp_path / 'never_trained'
    with pytest.raises(FileNotFoundError) as error:
        train.main([
            osp.join(repo_root, STUDENT_CFG), '--work-dir',
            str(work_dir), '--resume', '--cfg-options'
        ] + _data_options(digits_root))
    assert str(error.value).startswith(
        f'Nothing to resume: no loadable epoch_*.pth or iter_*.pth '
        f'checkpoint in the work dir {work_dir}. Drop --resume')
    assert not osp.exists(work_dir)  # no Runner was built


@pytest.mark.parametrize('tool,loader', [('train', 'train_dataloader'),
                                         ('test', 'test_dataloader')])
def test_missing_digits_folder_names_the_converter(repo_root, tmp_path,
                                                   monkeypatch, tool,
                                                   loader):
    monkeypatch.chdir(tmp_path)  # not the repository: data/digits is absent
    argv = [osp.join(repo_root, STUDENT_CFG)]
    if tool == 'test':
        argv.append(str(tmp_path / 'student.pth'))
    with pytest.raises(FileNotFoundError) as error:
        _tool(repo_root, tool).main(argv + ['--work-dir', str(tmp_path)])
    message = str(error.value)
    assert message.startswith(
        f'The data folder of {loader} does not exist: data/digits '
        f'({tmp_path}/data/digits).')
    assert 'python tools/dataset_converters/digits.py --out data/digits' in (
        message)
