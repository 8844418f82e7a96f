"""SafeCheckpointHook: a run killed (SIGKILL) at any point of a checkpoint
save keeps a complete checkpoint and a valid ``last_checkpoint``, and
``tools/train.py --resume`` continues from the newest complete one, even
with ``max_keep_ckpts=1``."""
import glob
import importlib.util
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from cls_kd.apis import checkpoint_problem, find_resume_checkpoint

STUDENT_CFG = 'configs/digits/vit-t4-p8_1xb64_digits.py'

# stage of the epoch-2 save at which the run is killed ->
# (files left, what last_checkpoint names, what --resume picks)
KILLED_AT = {
    'mid_write': (['epoch_1.pth', 'epoch_2.pth.tmp'], 'epoch_1.pth',
                  'epoch_1.pth'),
    'before_rename': (['epoch_1.pth', 'epoch_2.pth.tmp'], 'epoch_1.pth',
                      'epoch_1.pth'),
    # The new checkpoint is complete, last_checkpoint still names the old
    # one, which is kept until last_checkpoint moves on.
    'before_last_checkpoint': (['epoch_1.pth', 'epoch_2.pth'], 'epoch_1.pth',
                               'epoch_2.pth'),
    'before_remove': (['epoch_1.pth', 'epoch_2.pth'], 'epoch_2.pth',
                      'epoch_2.pth'),
}


def _train_args(repo_root, digits_root, epochs):
    return [
        osp.join(repo_root, STUDENT_CFG), '--no-validate', '--cfg-options',
        f'train_dataloader.dataset.data_root={digits_root}',
        'train_dataloader.dataset.indices=8', 'train_dataloader.batch_size=8',
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        f'train_cfg.max_epochs={epochs}',
        'default_hooks.checkpoint.max_keep_ckpts=1',
        'default_hooks.logger.interval=1'
    ]


def _checkpoint_files(folder):
    return sorted(n for n in os.listdir(folder) if '.pth' in n)


@pytest.fixture(scope='module')
def killed(repo_root, digits_root, tmp_path_factory):
    """One work dir per stage, its run killed there (one driver process,
    one forked run per stage)."""
    out = str(tmp_path_factory.mktemp('killed'))
    driver = osp.join(repo_root, 'tests', 'engine', 'kill_during_save.py')
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run(
        [sys.executable, driver, repo_root, out, ','.join(KILLED_AT), '--'] +
        _train_args(repo_root, digits_root, epochs=3),
        cwd=repo_root, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for stage in KILLED_AT:
        assert f'{stage}: killed' in proc.stdout
    return out


@pytest.mark.parametrize('stage', list(KILLED_AT))
def test_kill_leaves_a_complete_checkpoint(killed, stage):
    files, last, newest = KILLED_AT[stage]
    work_dir = osp.join(killed, stage)
    assert _checkpoint_files(work_dir) == files
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        target = f.read().strip()
    assert osp.basename(target) == last
    assert checkpoint_problem(target) is None
    if stage == 'mid_write':
        assert 'truncated' in checkpoint_problem(
            osp.join(work_dir, 'epoch_2.pth.tmp'))
    found = find_resume_checkpoint([work_dir])
    assert osp.basename(found) == newest
    ckpt = torch.load(found, map_location='cpu', weights_only=False)
    assert ckpt['meta']['epoch'] == int(newest[len('epoch_'):-len('.pth')])


@pytest.mark.parametrize('stage', list(KILLED_AT))
def test_resume_after_kill_finishes_the_run(killed, stage, repo_root,
                                            digits_root, capsys):
    _, _, newest = KILLED_AT[stage]
    work_dir = osp.join(killed, stage)
    spec = importlib.util.spec_from_file_location(
        'train_tool', osp.join(repo_root, 'tools', 'train.py'))
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    # Not this run's (no kept list names it): never removed.
    with open(osp.join(work_dir, 'epoch_0.pth'), 'wb') as f:
        f.write(b'a user copy')
    runner = train.main(
        _train_args(repo_root, digits_root, epochs=3) +
        ['--work-dir', work_dir, '--resume'])
    assert f'Resuming from {osp.join(work_dir, newest)}' in (
        capsys.readouterr().out)
    assert runner.epoch == 3
    # max_keep_ckpts=1, the stale one of a killed save removed too, and no
    # temporary file left behind.
    assert _checkpoint_files(work_dir) == ['epoch_0.pth', 'epoch_3.pth']
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        assert f.read() == osp.join(work_dir, 'epoch_3.pth')
    ckpt = torch.load(
        osp.join(work_dir, 'epoch_3.pth'), map_location='cpu',
        weights_only=False)
    assert ckpt['meta']['epoch'] == 3
    assert ckpt['message_hub']['runtime_info']['keep_ckpt_ids'] == [3]


def test_every_shipped_config_saves_safely(repo_root):
    """Also those that inherit mmpretrain's runtime (CheckpointHook)."""
    from mmengine.config import Config
    configs = sorted(
        p for p in glob.glob(
            osp.join(repo_root, 'configs', '**', '*.py'), recursive=True)
        # Synthesis configs (tools/synthesize.py) do not train.
        if '_base_' not in p and f'{osp.sep}synthesis{osp.sep}' not in p)
    assert len(configs) > 10
    plain = [
        osp.relpath(p, repo_root) for p in configs
        if Config.fromfile(p).default_hooks.checkpoint.type !=
        'SafeCheckpointHook'
    ]
    assert plain == []
