"""Checks before a run: a shortened schedule is fitted to max_epochs, and a
missing data folder is named with what writes it."""
import glob
import os
import os.path as osp

import pytest
from mmengine.config import Config

from cls_kd.utils import check_data_roots, fit_schedulers_to_max_epochs

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
