"""Checks before a run: a shortened schedule is fitted to max_epochs, a
missing data folder is named with what writes it, and an unfinished
synthesis folder or a class count that differs from the head's is refused
by the tools before the Runner."""
import glob
import os
import os.path as osp
import shlex

import pytest
from mmengine.config import Config

from cls_kd.apis import check_data_roots, fit_schedulers_to_max_epochs
from cls_kd.datasets import DatasetCheckError

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DIGITS = sorted(
    osp.relpath(p, ROOT)
    for p in glob.glob(osp.join(ROOT, 'configs', '**', '*_digits.py'),
                       recursive=True)
    # Synthesis configs (tools/synthesize.py) do not train.
    if '_base_' not in p and f'{osp.sep}synthesis{osp.sep}' not in p)


def _epoch_schedulers(cfg):
    schedulers = cfg.param_scheduler
    return [s for s in (schedulers if isinstance(schedulers, list) else
                        [schedulers]) if s.get('by_epoch', True)]


def test_digits_schedule_at_one_epoch():
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs/digits/vit-t4-p8_1xb64_digits.py'))
    cfg.train_cfg.max_epochs = 1
    notes = fit_schedulers_to_max_epochs(cfg)
    assert notes == [
        'LinearLR end 2 -> 1',
        'CosineAnnealingLR (begin=2) dropped: it would start at or after '
        'the last epoch'
    ]
    assert [(s.type, s.begin, s.end) for s in cfg.param_scheduler] == [
        ('LinearLR', 0, 1)
    ]


@pytest.mark.parametrize('max_epochs', [1, 2])
@pytest.mark.parametrize('config', DIGITS)
def test_every_digits_config_fits_a_short_run(config, max_epochs):
    """What mmengine requires of each epoch-based scheduler:
    begin < end <= max_epochs (end defaults to max_epochs)."""
    cfg = Config.fromfile(osp.join(ROOT, config))
    cfg.train_cfg.max_epochs = max_epochs
    fit_schedulers_to_max_epochs(cfg)
    schedulers = _epoch_schedulers(cfg)
    assert schedulers
    for s in schedulers:
        assert s.get('begin', 0) < s.get('end', max_epochs) <= max_epochs
    # Every distillation stage starts within the run; the last has no end.
    stages = cfg.model.get('stages') or [{}]
    assert all(s.end < max_epochs for s in stages[:-1])
    assert 'end' not in stages[-1]


@pytest.mark.parametrize('config', DIGITS)
def test_every_digits_config_can_auto_scale_lr(config):
    """--auto-scale-lr needs the batch the lr was set for: 1 x 64."""
    cfg = Config.fromfile(osp.join(ROOT, config))
    assert cfg.auto_scale_lr.base_batch_size == 64
    assert cfg.train_dataloader.batch_size == 64


def test_full_schedule_is_left_alone():
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs/digits/vit-t4-p8_1xb64_digits.py'))
    before = cfg.param_scheduler
    assert fit_schedulers_to_max_epochs(cfg) == []
    assert cfg.param_scheduler == before


def test_iteration_schedulers_and_optimizer_dicts():
    cfg = Config(dict(
        train_cfg=dict(by_epoch=True, max_epochs=3),
        param_scheduler=dict(
            backbone=[dict(type='LinearLR', by_epoch=False, begin=0,
                           end=5000),
                      dict(type='MultiStepLR', begin=1, end=10,
                           milestones=[2])],
            head=dict(type='ConstantLR', begin=4))))
    notes = fit_schedulers_to_max_epochs(cfg)
    assert notes == ['MultiStepLR end 10 -> 3',
                     'ConstantLR (begin=4) dropped: it would start at or '
                     'after the last epoch']
    backbone = cfg.param_scheduler.backbone
    assert backbone[0].end == 5000  # iterations: untouched
    assert backbone[1].end == 3
    assert cfg.param_scheduler.head == []


DEARKD = 'configs/dearkd/dearkd_resnet18-c16_vit-t4-p8_1xb64_digits.py'


def test_stage_beyond_max_epochs_is_fitted_and_printed(capsys):
    """DearKD's switch at epoch 32 of 40 in a 2-epoch run: the label-only
    stage is dropped and the distilling stage runs to the end."""
    cfg = Config.fromfile(osp.join(ROOT, DEARKD))
    assert [s.get('end') for s in cfg.model.stages] == [32, None]
    cfg.train_cfg.max_epochs = 2
    notes = fit_schedulers_to_max_epochs(cfg)
    assert notes[-2:] == [
        'model.stages[0] end 32 -> none (the last stage)',
        'model.stages[1] (begin=32) dropped: it would start at or after the '
        'last epoch'
    ]
    assert [dict(s) for s in cfg.model.stages] == [dict(by='epoch')]
    printed = capsys.readouterr().out.splitlines()
    assert printed[-2:] == [
        'distillation stages fitted to max_epochs=2: ' + n for n in notes[-2:]
    ]


@pytest.mark.parametrize('stages, max_epochs, fitted, notes', [
    # A stage starting exactly at max_epochs would never run.
    ([dict(end=3), dict(end=5), dict(distill=False)], 3, [{}],
     ['model.stages[0] end 3 -> none (the last stage)',
      'model.stages[1] (begin=3) dropped: it would start at or after the '
      'last epoch',
      'model.stages[2] (begin=5) dropped: it would start at or after the '
      'last epoch']),
    ([dict(end=2), dict(end=5), dict(distill=False)], 3,
     [dict(end=2), {}],
     ['model.stages[1] end 5 -> none (the last stage)',
      'model.stages[2] (begin=5) dropped: it would start at or after the '
      'last epoch']),
    # Reached within the run, or counted in iterations: left alone.
    ([dict(end=2), dict(distill=False)], 3,
     [dict(end=2), dict(distill=False)], []),
    ([dict(by='iter', end=500), dict(distill=False)], 3,
     [dict(by='iter', end=500), dict(distill=False)], []),
])
def test_stages_fitted_by_the_lr_rule(stages, max_epochs, fitted, notes):
    cfg = Config(dict(train_cfg=dict(max_epochs=max_epochs),
                      model=dict(stages=stages)))
    assert fit_schedulers_to_max_epochs(cfg) == notes
    assert [dict(s) for s in cfg.model.stages] == fitted


def test_stop_distill_hook_beyond_max_epochs_is_fitted():
    cfg = Config(dict(train_cfg=dict(max_epochs=3), custom_hooks=[
        dict(type='EMAHook'),
        dict(type='cls_kd.StopDistillHook', stop_epoch=3,
             student_loss_weight=0.5)]))
    assert fit_schedulers_to_max_epochs(cfg) == [
        'custom_hooks: cls_kd.StopDistillHook (stop_epoch=3) -> '
        'DistillScheduleHook: it would stop at or after the last epoch'
    ]
    assert cfg.custom_hooks == [dict(type='EMAHook'),
                                dict(type='cls_kd.DistillScheduleHook')]
    cfg.custom_hooks[1] = dict(type='StopDistillHook', stop_epoch=2)
    assert fit_schedulers_to_max_epochs(cfg) == []


def test_iteration_based_training_is_left_alone():
    cfg = Config(dict(
        train_cfg=dict(by_epoch=False, max_iters=10),
        param_scheduler=[dict(type='LinearLR', begin=0, end=2)]))
    assert fit_schedulers_to_max_epochs(cfg) == []


def _loader(root, prefix='train'):
    return dict(dataset=dict(type='CustomDataset', data_root=root,
                             data_prefix=prefix))


def test_missing_digits_folder_names_the_converter(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = Config(dict(train_dataloader=_loader('data/digits')))
    with pytest.raises(FileNotFoundError) as error:
        check_data_roots(cfg, ('train_dataloader', 'val_dataloader'))
    message = str(error.value)
    assert message.startswith(
        'The data folder of train_dataloader does not exist: data/digits '
        f'({tmp_path}/data/digits).')
    assert ('Write it with `python tools/dataset_converters/digits.py '
            '--out data/digits`') in message
    assert 'train_dataloader.dataset.data_root=<folder>' in message
    assert f'working directory: {tmp_path}' in message


def test_missing_split_folder_is_named(tmp_path):
    os.makedirs(tmp_path / 'imagenet' / 'train')
    cfg = Config(dict(
        train_dataloader=_loader(str(tmp_path / 'imagenet')),
        val_dataloader=dict(dataset=dict(
            type='ClassBalancedDataset',
            dataset=_loader(str(tmp_path / 'imagenet'),
                            dict(img_path='val'))['dataset']))))
    with pytest.raises(FileNotFoundError) as error:
        check_data_roots(cfg, ('train_dataloader', 'val_dataloader'))
    message = str(error.value)
    assert message.startswith('The data folder of val_dataloader does not '
                              f'exist: {tmp_path}/imagenet/val')
    assert "README says" in message and 'digits.py' not in message


def test_present_or_remote_data_passes(tmp_path):
    os.makedirs(tmp_path / 'digits' / 'train')
    cfg = Config(dict(
        train_dataloader=_loader(str(tmp_path / 'digits')),
        val_dataloader=_loader('s3://bucket/digits', 'val'),
        test_dataloader=_loader(str(tmp_path / 'nowhere'))))
    check_data_roots(cfg, ('train_dataloader', 'val_dataloader'))


STUDENT = 'configs/digits/vit-t4-p8_1xb64_digits.py'
DATAFREE = ('configs/dearkd/'
            'dearkd_resnet18-c16_vit-t4-p8_1xb64_digits-datafree.py')
SYNTHESIS = 'configs/dearkd/synthesis/deepinversion_resnet18-c16_digits.py'


def _roots(train, val):
    return [f'train_dataloader.dataset.data_root={train}',
            f'val_dataloader.dataset.data_root={val}',
            f'test_dataloader.dataset.data_root={val}']


@pytest.mark.parametrize('tool,loader', [('train', 'train_dataloader'),
                                         ('test', 'test_dataloader')])
def test_tools_refuse_a_class_folder_beyond_num_classes(
        tool_loader, digits_root, tmp_path, tool, loader):
    """11 class folders (``0``..``10``) for a 10-class head: refused with
    both numbers before the Runner, not ``IndexError: Target 10 is out of
    bounds`` mid-epoch."""
    eleven = tmp_path / 'eleven'
    for k in range(11):
        os.makedirs(eleven / 'train' / str(k))
        os.makedirs(eleven / 'val' / str(k))
        for split in ('train', 'val'):
            (eleven / split / str(k) / 'x.png').write_bytes(b'')
    roots = _roots(*((eleven, digits_root) if tool == 'train' else
                     (digits_root, eleven)))
    argv = [osp.join(ROOT, STUDENT)]
    if tool == 'test':
        argv.append(str(tmp_path / 'student.pth'))
    work_dir = tmp_path / 'work'
    with pytest.raises(DatasetCheckError) as error:
        tool_loader(f'tools/{tool}.py').main(
            argv + ['--work-dir', str(work_dir), '--cfg-options', *roots])
    split = 'train' if tool == 'train' else 'val'
    assert str(error.value).startswith(
        f'The dataset of {loader} has 11 classes (11 class folders in '
        f'{eleven}/{split}), but the model scores 10 '
        f'(model.head.num_classes=10)')
    assert not work_dir.exists()  # no Runner: no log, no checkpoint


def test_train_refuses_an_unfinished_synthesis_folder(tool_loader,
                                                      digits_root, tmp_path,
                                                      capsys):
    """Refused with the command that finishes it; that command does."""
    synthesize = tool_loader('tools/synthesize.py')
    out = tmp_path / 'synth'
    synthesize.main([
        osp.join(ROOT, SYNTHESIS), '--out', str(out), '--max-batches', '1',
        '--cfg-options', 'teacher.random_init=True',
        'teacher.checkpoint=None', 'synthesis.num_images=20',
        'synthesis.batch_size=10', 'synthesis.phases.0.iters=1',
        'synthesis.phases.1.iters=1'
    ])
    work_dir = tmp_path / 'work'
    argv = [osp.join(ROOT, DATAFREE), '--work-dir', str(work_dir),
            '--cfg-options', *_roots(out, digits_root)]
    with pytest.raises(DatasetCheckError) as error:
        tool_loader('tools/train.py').main(argv)
    message = str(error.value)
    assert message.startswith(
        f'The data folder of train_dataloader holds an unfinished synthesis '
        f'run: {out} (1 of 2 batches done; manifest.json has "complete": '
        f'false).')
    assert not work_dir.exists()
    command = message.split('Finish it first with: ')[1]
    words = shlex.split(command)
    assert words[:2] == ['python', osp.join(ROOT, 'tools', 'synthesize.py')]
    synthesize.main(words[2:])
    assert 'Wrote 20 images' in capsys.readouterr().out
    cfg = Config.fromfile(osp.join(ROOT, DATAFREE))
    cfg.merge_from_dict(dict(a.split('=', 1) for a in _roots(out,
                                                             digits_root)))
    check_data_roots(cfg, ('train_dataloader', 'val_dataloader'))
