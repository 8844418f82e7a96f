"""Resuming at an epoch boundary repeats the uninterrupted run bit for bit
when data workers are re-created every epoch (README, "Resuming"): mmengine
seeds each worker with seed + worker id, and the sampler with seed + epoch,
so the digits config's RandomCrop draws the same crops again."""
import importlib.util
import os.path as osp

import torch

STUDENT_CFG = 'configs/digits/vit-t4-p8_1xb64_digits.py'


def test_resume_at_epoch_boundary_equals_uninterrupted_run(
        repo_root, digits_root, tmp_path):
    spec = importlib.util.spec_from_file_location(
        'train_tool', osp.join(repo_root, 'tools', 'train.py'))
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)

    def run(work_dir, *extra):
        train.main([
            osp.join(repo_root, STUDENT_CFG), '--work-dir',
            str(work_dir), '--no-validate', *extra, '--cfg-options',
            f'train_dataloader.dataset.data_root={digits_root}',
            'train_dataloader.dataset.indices=64',
            'train_dataloader.batch_size=32',
            'train_dataloader.num_workers=1',
            'train_dataloader.persistent_workers=False',
            'train_cfg.max_epochs=2'
        ])
        return torch.load(
            osp.join(work_dir, 'epoch_2.pth'), map_location='cpu',
            weights_only=False)

    uninterrupted = run(tmp_path / 'a')
    resumed = run(tmp_path / 'b', '--resume', str(tmp_path / 'a' /
                                                 'epoch_1.pth'))
    assert resumed['meta']['iter'] == uninterrupted['meta']['iter'] == 4
    first = torch.load(
        tmp_path / 'a' / 'epoch_1.pth', map_location='cpu',
        weights_only=False)['state_dict']
    state_a, state_b = uninterrupted['state_dict'], resumed['state_dict']
    assert set(state_a) == set(state_b)
    assert any(not torch.equal(first[k], state_a[k]) for k in state_a)
    for key, value in state_a.items():
        assert torch.equal(value, state_b[key]), key
