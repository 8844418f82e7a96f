"""Every tool takes a packaged config name (``cls_kd::kd/x.py``) where it
takes a config path, prints the file it resolved to, and refuses a name
that does not exist with where it looked."""
import os.path as osp

import pytest
import torch

KD = 'kd/kd_resnet18-c16_vit-t4-p8_1xb64_digits.py'
SYNTH = 'dearkd/synthesis/deepinversion_resnet18-c16_digits.py'
# tool -> (packaged config, the other required arguments)
TOOLS = {
    'tools/train.py': (KD, []),
    'tools/test.py': (KD, ['student.pth']),
    'tools/synthesize.py': (SYNTH, ['--out', 'synth']),
    'tools/analysis/benchmark.py': (KD, []),
    'tools/analysis/distiller_summary.py': (KD, []),
    'tools/analysis/loss_shares.py': (KD, []),
    'tools/analysis/print_recipe.py': (KD, []),
    'tools/analysis/print_taps.py': (KD, []),
    'tools/analysis/visualize_distill.py': (KD, ['--student-ckpt', 's.pth']),
}


@pytest.mark.parametrize('tool', sorted(TOOLS))
def test_every_tool_resolves_a_packaged_config(tool, tool_loader, repo_root,
                                               capsys):
    config, rest = TOOLS[tool]
    args = tool_loader(tool).parse_args([f'cls_kd::{config}', *rest])
    assert osp.samefile(args.config, osp.join(repo_root, 'configs', config))
    assert f'cls_kd::{config} -> ' in capsys.readouterr().out


@pytest.mark.parametrize('tool', sorted(TOOLS))
def test_a_missing_packaged_config_is_a_usage_error(tool, tool_loader,
                                                    capsys):
    _, rest = TOOLS[tool]
    with pytest.raises(SystemExit) as info:
        tool_loader(tool).parse_args(['cls_kd::kd/no_such.py', *rest])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "config 'cls_kd::kd/no_such.py' not found; tried: " in err
    assert 'configs/kd/no_such.py' in err


def _data(digits_root, *loaders):
    options = []
    for loader in loaders:
        options += [
            f'{loader}.dataset.data_root={digits_root}',
            f'{loader}.dataset.indices=16', f'{loader}.num_workers=0',
            f'{loader}.persistent_workers=False'
        ]
    return options


def test_train_then_test_by_packaged_name(tool_loader, digits_root, tmp_path,
                                          monkeypatch):
    monkeypatch.chdir(tmp_path)  # outside the repository
    name = f'cls_kd::{KD}'
    runner = tool_loader('tools/train.py').main([
        name, '--work-dir', 'work', '--cfg-options',
        *_data(digits_root, 'train_dataloader', 'val_dataloader'),
        'train_dataloader.batch_size=8', 'train_cfg.max_epochs=1',
        'model.teacher.random_init=True'
    ])
    assert runner.iter == 2
    ckpt = tmp_path / 'work' / 'epoch_1.pth'
    assert ckpt.exists()
    metrics = tool_loader('tools/test.py').main([
        name, str(ckpt), '--work-dir', 'test', '--cfg-options',
        *_data(digits_root, 'test_dataloader'),
        'model.teacher.random_init=True'
    ])
    assert 0 <= metrics['accuracy/top1'] <= 100


def test_analysis_tools_by_packaged_name(tool_loader, digits_root, tmp_path,
                                         capsys):
    name = f'cls_kd::{KD}'
    tool_loader('tools/analysis/print_recipe.py').main([name])
    assert 'optimizer.type' in capsys.readouterr().out
    tool_loader('tools/analysis/distiller_summary.py').main(
        [name, '--random-teachers'])
    assert 'loss_kd' in capsys.readouterr().out
    tool_loader('tools/analysis/print_taps.py').main([name])
    assert 'backbone.layers.3' in capsys.readouterr().out
    out = tmp_path / 'bench.json'
    tool_loader('tools/analysis/benchmark.py').main([
        name, '--device', 'cpu', '--iters', '1', '--warmup', '1',
        '--batch-size', '2', '--out',
        str(out)
    ])
    assert out.exists()
    shares = tool_loader('tools/analysis/loss_shares.py').main([
        name, '--batches', '1', '--cfg-options',
        'model.teacher.random_init=True',
        f'train_dataloader.dataset.data_root={digits_root}',
        'train_dataloader.batch_size=4'
    ])
    assert set(shares['init']) == {'loss_cls', 'loss_kd'}


def test_synthesize_by_packaged_name(tool_loader, tmp_path):
    out = tmp_path / 'synth'
    tool_loader('tools/synthesize.py').main([
        f'cls_kd::{SYNTH}', '--out',
        str(out), '--cfg-options', 'teacher.random_init=True',
        'teacher.checkpoint=None', 'synthesis.num_images=10',
        'synthesis.batch_size=10', 'synthesis.phases.0.size=4',
        'synthesis.phases.0.iters=1', 'synthesis.phases.1.size=8',
        'synthesis.phases.1.iters=1', 'synthesis.log_interval=0'
    ])
    assert (out / 'manifest.json').exists()


def test_visualize_by_packaged_name(tool_loader, repo_root, digits_root,
                                    tmp_path):
    from mmengine.config import Config

    from cls_kd.registry import MODELS
    from cls_kd.utils import resolve_teacher_paths
    cfg = resolve_teacher_paths(
        Config.fromfile(osp.join(repo_root, 'configs', KD)))
    cfg.model.teacher.random_init = True
    cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    distiller = MODELS.build(cfg.model)
    ckpt = tmp_path / 'distiller.pth'
    torch.save({'state_dict': distiller.state_dict()}, ckpt)
    teacher = tmp_path / 'teacher.pth'
    torch.save({'state_dict': distiller.teachers['teacher'].state_dict()},
               teacher)
    tool_loader('tools/analysis/visualize_distill.py').main([
        f'cls_kd::{KD}', '--student-ckpt',
        str(ckpt), '--teacher-ckpt', f'teacher={teacher}', '--num', '1',
        '--out-dir',
        str(tmp_path / 'vis'), '--cfg-options',
        f'test_dataloader.dataset.data_root={digits_root}'
    ])
    assert any((tmp_path / 'vis').iterdir())
