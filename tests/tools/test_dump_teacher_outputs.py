"""tools/dump_teacher_outputs.py: records, resuming a killed dump, --check
and refusals."""
import importlib.util
import json
import os.path as osp

import numpy as np
import pytest

HERE = osp.dirname(osp.abspath(__file__))


def _replay_tests():
    """tests/models/teachers/test_stored_outputs.py (its config helper)."""
    path = osp.join(HERE, '..', 'models', 'teachers', 'test_stored_outputs.py')
    spec = importlib.util.spec_from_file_location('replay_tests', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def setup(digits_root, tool_loader, tmp_path_factory):
    work = tmp_path_factory.mktemp('dump')
    cfg = _replay_tests().seeded_kd_config(digits_root, work, images=24,
                                           batch_size=8)
    path = str(work / 'config.py')
    cfg.dump(path)
    return tool_loader('tools/dump_teacher_outputs.py'), path, work


def _record_dtype(out):
    from cls_kd.models.teachers.stored_outputs import (
        read_manifest,
        record_dtype,
    )
    m = read_manifest(out)
    return record_dtype(m['topk'], m['num_classes'], m['dtype'],
                        mixed=m.get('mix') is not None)


def _records(out, epoch):
    return np.fromfile(osp.join(out, f'epoch_{epoch:04d}.bin'), np.uint8)


def test_killed_dump_resumes_and_redoes_the_torn_epoch(setup, capsys,
                                                       monkeypatch):
    tool, config, work = setup
    clean = str(work / 'clean')
    manifest = tool.main([config, '--out', clean, '--topk', '4'])
    assert manifest['epochs'].keys() == {'0', '1'}
    assert manifest['topk'] == 4 and manifest['run']['length'] == 24
    # 24 samples x (4 float16 + 4 int16 + 3 x 4 bytes).
    assert _records(clean, 0).size == 24 * 28
    assert not np.array_equal(_records(clean, 0), _records(clean, 1))

    out = str(work / 'torn')
    calls = []
    encode = tool.encode_records

    def dies_in_epoch_1(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:  # second batch of epoch 1 (3 batches an epoch)
            raise KeyboardInterrupt
        return encode(*args, **kwargs)

    monkeypatch.setattr(tool, 'encode_records', dies_in_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        tool.main([config, '--out', out, '--topk', '4'])
    monkeypatch.undo()
    with open(osp.join(out, 'manifest.json')) as f:
        assert json.load(f)['epochs'].keys() == {'0'}
    capsys.readouterr()
    tool.main([config, '--out', out, '--topk', '4', '--check', '6'])
    printed = capsys.readouterr().out
    assert 'epoch 0: complete, skipped' in printed
    assert 'epoch 1: batch 3/3' in printed
    for epoch in (0, 1):
        assert np.array_equal(_records(out, epoch), _records(clean, epoch))
    # float16 logits of a random teacher (|z| < 1): within half an ulp.
    diff = float(printed.split('stored logit ')[1].split()[0])
    assert 0 <= diff < 5e-4


def test_store_of_another_kind_in_out_is_refused(setup):
    tool, config, work = setup
    out = str(work / 'other')
    tool.main([config, '--out', out, '--topk', '2', '--epochs', '0:1'])
    with pytest.raises(SystemExit, match=r'holds outputs with topk=2, this '
                       r'dump would write 3: choose another --out'):
        tool.main([config, '--out', out, '--topk', '3', '--epochs', '0:1'])


def test_several_processes_without_the_launcher_are_refused(setup,
                                                           monkeypatch):
    tool, config, work = setup
    monkeypatch.setenv('WORLD_SIZE', '2')
    with pytest.raises(SystemExit, match='several processes but --launcher '
                       'none: use bash tools/dist_dump.sh'):
        tool.main([config, '--out', str(work / 'ws')])


def test_unseeded_training_set_is_refused(setup, tool_loader, repo_root,
                                          digits_root):
    tool, _, work = setup
    with pytest.raises(SystemExit, match='not wrapped in SeededAugmentData'):
        tool.main([osp.join(repo_root, 'configs', 'kd',
                            'kd_resnet18-c16_vit-t4-p8_1xb64_digits.py'),
                   '--out', str(work / 'plain'), '--cfg-options',
                   'model.teacher.random_init=True',
                   f'train_dataloader.dataset.data_root={digits_root}'])


def test_transform_that_cannot_be_replayed_is_refused(setup):
    tool, config, work = setup
    with pytest.raises(SystemExit, match=r"error: train_dataloader: "
                       r"SeededAugmentDataset: transforms \['RandomResize'\] "
                       r'are not known to be replayable'):
        tool.main([config, '--out', str(work / 'tr'), '--cfg-options',
                   'train_dataloader.dataset.dataset.pipeline.1.type='
                   'RandomResize'])
    assert not osp.exists(work / 'tr')


def test_bad_epochs_are_refused(setup):
    tool, config, work = setup
    with pytest.raises(SystemExit, match=r'--epochs 2:1: need 0 <= A < B'):
        tool.main([config, '--out', str(work / 'e'), '--epochs', '2:1'])


@pytest.mark.slow
def test_dump_split_over_two_processes_equals_the_one_process_dump(
        setup, repo_root, tool_loader):
    """``tools/dist_dump.sh CONFIG 2`` (gloo) splits each epoch's batches
    between two processes; with Mixup/CutMix (records that depend on the
    whole batch) the files equal a one-process dump for 2 training ranks
    byte for byte."""
    import os
    import socket
    import subprocess
    import sys

    from mmengine.config import Config
    tool, config, work = setup
    mixed = _replay_tests().mixed(Config.fromfile(config))
    path = str(work / 'mixed.py')
    mixed.dump(path)
    one = str(work / 'one')
    manifest = tool.main([path, '--out', one, '--world-size', '2'])
    assert manifest['run']['world_size'] == 2
    assert manifest['mix']['sampler_seed'] == 0
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PORT=str(port), OMP_NUM_THREADS='1')
    env['PATH'] = osp.dirname(sys.executable) + os.pathsep + env['PATH']
    two = str(work / 'two')
    proc = subprocess.run(
        ['bash', 'tools/dist_dump.sh', path, '2', '--out', two],
        cwd=repo_root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert 'split over 2 processes' in proc.stdout
    with open(osp.join(two, 'manifest.json')) as f:
        split = json.load(f)
    assert split['run'] == manifest['run'] and split['mix'] == manifest['mix']
    assert split['epochs'].keys() == {'0', '1'}
    for epoch in (0, 1):
        assert np.array_equal(_records(two, epoch), _records(one, epoch))
    # The batches of 2 ranks are not those of 1: other batch keys.
    single = str(work / 'single')
    tool.main([path, '--out', single, '--world-size', '1'])
    assert not np.array_equal(_records(single, 0), _records(one, 0))
    # Two processes dumping for one training process: the batches of that
    # one process, not each dump process's shard of them.
    env['PORT'] = str(port + 1)
    split_one = str(work / 'split_one')
    proc = subprocess.run(
        ['bash', 'tools/dist_dump.sh', path, '2', '--out', split_one,
         '--world-size', '1'],
        cwd=repo_root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    for epoch in (0, 1):
        assert np.array_equal(_records(split_one, epoch),
                              _records(single, epoch))


def test_several_machines_are_refused(setup, repo_root):
    import os
    import subprocess
    _, config, work = setup
    proc = subprocess.run(
        ['bash', 'tools/dist_dump.sh', config, '2', '--out',
         str(work / 'nodes')], cwd=repo_root, capture_output=True,
        text=True, env=dict(os.environ, NNODES='2'), timeout=60)
    assert proc.returncode == 2
    assert 'one machine only (NNODES=2)' in proc.stderr


def test_drop_last_without_batch_augments_dumps_every_sample(setup):
    """drop_last leaves a rank's partial batch out of training, but a run
    with another sampler order drops other samples: all are dumped."""
    tool, config, work = setup
    out = str(work / 'drop_last')
    tool.main([config, '--out', out, '--epochs', '0:1', '--cfg-options',
               'train_dataloader.drop_last=True',
               'train_dataloader.batch_size=16'])  # 24 = 16 + 8 dropped
    records = np.fromfile(osp.join(out, 'epoch_0000.bin'),
                          _record_dtype(out))
    assert (records['lse'] != 0).all()  # every record written


def test_train_mode_teacher_is_refused(setup):
    tool, config, work = setup
    with pytest.raises(SystemExit, match=r"teacher 'teacher' follows the "
                       r'train mode \(train_mode=True'):
        tool.main([config, '--out', str(work / 'tm'), '--cfg-options',
                   'model.teacher.train_mode=True'])


def test_mixed_dump_without_a_seed_is_refused(setup):
    from mmengine.config import Config
    tool, config, work = setup
    cfg = _replay_tests().mixed(Config.fromfile(config))
    cfg.randomness = dict(seed=None)
    path = str(work / 'mixed_unseeded.py')
    cfg.dump(path)
    with pytest.raises(SystemExit, match=r'batch augments \(Mixup/CutMix\) '
                       r'but no randomness.seed'):
        tool.main([path, '--out', str(work / 'unseeded')])
