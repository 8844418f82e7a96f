"""What ``--resume`` continues from: the newest checkpoint that loads, broken
ones skipped by name, nothing to resume an error (or, from a config, a loud
warning)."""
import os.path as osp
import warnings

import pytest
import torch
from mmengine.config import Config

from cls_kd.apis import checkpoint_problem, resolve_resume


def _save(path, epoch):
    torch.save({'meta': {'epoch': epoch},
                'state_dict': {'w': torch.full((64, ), float(epoch))}}, path)
    return str(path)


def _truncate(path):
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 2])


def _cfg(work_dir, **extra):
    return Config(dict(
        work_dir=str(work_dir), resume=True, load_from=None,
        train_dataloader=dict(num_workers=2, persistent_workers=False),
        **extra))


def test_checkpoint_problem_names_the_defect(tmp_path):
    good = _save(tmp_path / 'epoch_1.pth', 1)
    assert checkpoint_problem(good) is None
    (tmp_path / 'empty.pth').write_bytes(b'')
    assert checkpoint_problem(str(tmp_path / 'empty.pth')) == 'empty file'
    truncated = _save(tmp_path / 'epoch_2.pth', 2)
    _truncate(truncated)
    assert checkpoint_problem(truncated).startswith('truncated')
    torch.save({'weights': torch.zeros(2)}, tmp_path / 'plain.pth')
    assert 'no meta/state_dict' in checkpoint_problem(
        str(tmp_path / 'plain.pth'))
    assert checkpoint_problem(str(tmp_path / 'missing.pth')) == (
        'no such file')


def test_truncated_latest_and_empty_last_checkpoint_fall_back(tmp_path):
    """The state a kill -9 left with mmengine's own CheckpointHook."""
    for epoch in (1, 2, 10):
        _save(tmp_path / f'epoch_{epoch}.pth', epoch)
    _truncate(tmp_path / 'epoch_10.pth')
    (tmp_path / 'last_checkpoint').write_text('')
    cfg = _cfg(tmp_path)
    with pytest.warns(UserWarning) as record:
        path = resolve_resume(cfg, required=True)
    # epoch_10 sorts before epoch_2 by number, not by name.
    assert path == str(tmp_path / 'epoch_2.pth') == cfg.load_from
    messages = [str(w.message) for w in record]
    skipped = [m for m in messages if m.startswith('Skipping checkpoint')]
    assert len(skipped) == 1
    assert str(tmp_path / 'epoch_10.pth') in skipped[0]
    assert 'truncated' in skipped[0]
    assert any('last_checkpoint is empty' in m for m in messages)


def test_newest_good_checkpoint_wins_over_last_checkpoint(tmp_path):
    _save(tmp_path / 'iter_100.pth', 1)
    _save(tmp_path / 'iter_200.pth', 2)
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_100.pth'))
    cfg = _cfg(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert resolve_resume(cfg, required=True) == str(
            tmp_path / 'iter_200.pth')


def test_explicit_resume_with_nothing_to_resume_is_an_error(tmp_path):
    _save(tmp_path / 'epoch_1.pth.tmp', 1)  # an unfinished save only
    with pytest.raises(FileNotFoundError) as error:
        resolve_resume(_cfg(tmp_path), required=True)
    message = str(error.value)
    assert message.startswith('Nothing to resume')
    assert f'work dir {tmp_path}' in message
    assert 'Drop --resume to train from scratch' in message


def test_config_resume_with_nothing_to_resume_warns_loudly(tmp_path):
    cfg = _cfg(tmp_path / 'never_trained')
    with pytest.warns(UserWarning, match='TRAINING FROM SCRATCH'):
        assert resolve_resume(cfg, required=False) is None
    assert cfg.resume is False and cfg.load_from is None


def test_explicit_checkpoint_must_load(tmp_path):
    path = _save(tmp_path / 'epoch_3.pth', 3)
    _truncate(path)
    cfg = _cfg(tmp_path / 'elsewhere')
    cfg.load_from = path
    with pytest.raises(FileNotFoundError,
                       match=f'Cannot resume from {path}: truncated'):
        resolve_resume(cfg, required=False)


def test_out_dir_checkpoints_are_found(tmp_path):
    work_dir = tmp_path / 'work' / 'run1'
    out = tmp_path / 'out' / 'run1'
    out.mkdir(parents=True)
    _save(out / 'epoch_4.pth', 4)
    cfg = _cfg(work_dir, default_hooks=dict(
        checkpoint=dict(out_dir=str(tmp_path / 'out'))))
    assert resolve_resume(cfg, required=True) == str(out / 'epoch_4.pth')


def test_not_resuming_touches_nothing(tmp_path):
    cfg = _cfg(tmp_path)
    cfg.resume = False
    assert resolve_resume(cfg, required=True) is None
    assert cfg.load_from is None


@pytest.mark.parametrize('loader,expected', [
    (dict(num_workers=0), 'num_workers=0'),
    (dict(num_workers=1, persistent_workers=True), 'persistent_workers=True'),
    (dict(num_workers=1, persistent_workers=False), None),
])
def test_resume_says_when_augmentations_will_differ(tmp_path, capsys, loader,
                                                    expected):
    _save(tmp_path / 'epoch_1.pth', 1)
    cfg = _cfg(tmp_path)
    cfg.train_dataloader = loader
    resolve_resume(cfg, required=True)
    out = capsys.readouterr().out
    assert f'Resuming from {osp.join(tmp_path, "epoch_1.pth")}' in out
    if expected is None:
        assert 'not saved in checkpoints' not in out
    else:
        assert 'random state of data augmentation is not saved' in out
        assert expected in out
