"""DDP (gloo, 2 processes, find_unused_parameters=False) through a stage
switch: ViTKD's connectors are used in epoch 0 and idle from epoch 1 on,
when the teacher is no longer run and no distillation term is logged; both
ranks end with the same weights, the idle connectors' included."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

VITKD_CFG = 'configs/vitkd/vitkd_deit3-6x128-p8_vit-4x32-p8_1xb64_digits.py'


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == 'win32', reason='bash launcher')
def test_ddp_through_stage_switch(repo_root, digits_root, tmp_path):
    config = tmp_path / 'staged.py'
    config.write_text(
        f'_base_ = [{osp.join(repo_root, VITKD_CFG)!r}]\n'
        'model = dict(stages=[dict(end=1), '
        'dict(distill=False, student_loss_weight=1.0)],\n'
        '             teacher=dict(random_init=True))\n'
        "custom_imports = dict(imports=['buffer_probe_hook'], "
        'allow_failed_imports=False)\n'
        'default_hooks = dict(probe=dict(type="BufferProbeHook", '
        f'out_dir={str(tmp_path)!r}))\n')
    env = dict(os.environ, PORT='29641', OMP_NUM_THREADS='1')
    env['PATH'] = osp.dirname(sys.executable) + os.pathsep + env['PATH']
    env['PYTHONPATH'] = os.pathsep.join(
        [osp.dirname(osp.abspath(__file__)), env.get('PYTHONPATH', '')])
    proc = subprocess.run(
        [
            'bash', 'tools/dist_train.sh', str(config), '2', '--work-dir',
            str(tmp_path / 'work'), '--no-validate', '--cfg-options',
            f'train_dataloader.dataset.data_root={digits_root}',
            'train_dataloader.dataset.indices=32',
            'train_dataloader.batch_size=8', 'train_cfg.max_epochs=2',
            'train_dataloader.num_workers=0',
            'train_dataloader.persistent_workers=False',
            'default_hooks.logger.interval=1',
            'find_unused_parameters=False'
        ],
        cwd=repo_root, env=env, capture_output=True, text=True, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert 'Distillation stage 1 from epoch 2' in log
    scalars = []
    for root, _, files in os.walk(tmp_path / 'work'):
        if 'scalars.json' in files:
            with open(osp.join(root, 'scalars.json')) as f:
                scalars = [json.loads(line) for line in f]
    by_epoch = {}
    for entry in scalars:
        if 'loss' in entry:
            by_epoch.setdefault(entry['epoch'], []).append(entry)
    assert all('loss_vitkd_mimic' in e for e in by_epoch[1])
    assert by_epoch[2] and all(
        'loss_vitkd_mimic' not in e and 'loss_vitkd_gen' not in e
        for e in by_epoch[2])
    # Each rank's weights after the last step (BufferProbeHook): DDP kept
    # them equal, bit for bit, and the checkpoint holds them.
    probed = [
        torch.load(tmp_path / f'trained_rank{rank}.pth', weights_only=True)
        for rank in (0, 1)
    ]
    weights = [p['params'] for p in probed]
    checkpoint = torch.load(tmp_path / 'work' / 'epoch_2.pth',
                            weights_only=False)['state_dict']
    assert set(weights[0]) == set(weights[1]) == set(checkpoint) - set(
        probed[0]['buffers'])
    assert any(k.startswith('connectors.') for k in weights[0])
    for key, value in weights[0].items():
        assert torch.equal(value, weights[1][key]), key
        assert torch.equal(checkpoint[key], value), key
