"""``tools/analysis/benchmark.py --replay``: student alone, online KD and
replayed KD timed in turn (no timing claims: who runs what, and refusals)."""
import collections
import json

import pytest
import torch
from torch.nn.modules.module import register_module_forward_hook

from cls_kd.models.losses.kd import KDLoss
from cls_kd.models.teachers.stored_outputs import StoredOutputs

KD_CONFIG = 'configs/kd/kd_resnet18-c16_vit-t4-p8_1xb64_digits.py'
VITKD_CONFIG = 'configs/vitkd/vitkd_deit3-6x128-p8_vit-4x32-p8_1xb64_digits.py'
ROWS = ['student alone', 'online KD', 'replayed KD']


@pytest.fixture
def labelled(benchmark_tool, monkeypatch):
    """Which step of ``_timed_in_turn`` is running: ``current['label']``
    (None outside the timed steps)."""
    current = {'label': None}
    timed = benchmark_tool._timed_in_turn

    def in_turn(fns, *args, **kwargs):
        def wrap(label, fn):
            def run():
                current['label'] = label
                try:
                    return fn()
                finally:
                    current['label'] = None
            return run

        return timed({label: wrap(label, fn)
                      for label, fn in fns.items()}, *args, **kwargs)

    monkeypatch.setattr(benchmark_tool, '_timed_in_turn', in_turn)
    return current


def test_replay_times_three_steps_and_the_replayed_one_runs_no_teacher(
        benchmark_tool, labelled, repo_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(repo_root)
    teacher_runs, reads = collections.Counter(), collections.Counter()
    seen = collections.defaultdict(list)  # label -> logits_t of KDLoss

    def count_teacher(module, args, output):
        # The digits teacher's backbone (the student is a ViT).
        if type(module).__name__ == 'ResNet_CIFAR':
            teacher_runs[labelled['label']] += 1

    read = StoredOutputs.read

    def counted_read(self, *args, **kwargs):
        reads[labelled['label']] += 1
        return read(self, *args, **kwargs)

    forward = KDLoss.forward

    def kept_forward(self, logits_s, logits_t):
        seen[labelled['label']].append(logits_t.detach().clone())
        return forward(self, logits_s, logits_t)

    monkeypatch.setattr(StoredOutputs, 'read', counted_read)
    monkeypatch.setattr(KDLoss, 'forward', kept_forward)
    out = tmp_path / 'results.json'
    hook = register_module_forward_hook(count_teacher)
    try:
        benchmark_tool.main([
            KD_CONFIG, '--device', 'cpu', '--replay', '--iters', '2',
            '--warmup', '1', '--batch-size', '4', '--out', str(out)
        ])
    finally:
        hook.remove()

    results = json.loads(out.read_text())
    rows = results['replay']['rows']
    assert list(rows) == ROWS
    for label in ROWS:
        assert len(rows[label]['step_ms']) == 2
    # 1 warm-up + 2 timed rounds; the replayed step reads instead of running.
    assert teacher_runs['online KD'] == 3
    assert teacher_runs['replayed KD'] == 0
    assert teacher_runs['student alone'] == 0
    assert reads['replayed KD'] == 3 and reads['online KD'] == 0
    assert 'student alone' not in seen  # no KD term in it
    # Digits: k = 10 = all classes, so the replayed logits are the online
    # teacher's (same seeded weights, same batch) up to float16 rounding.
    online, replayed = seen['online KD'][0], seen['replayed KD'][0]
    assert replayed.shape == online.shape == (4, 10)
    torch.testing.assert_close(replayed, online, rtol=1e-3, atol=1e-3)
    assert not torch.equal(online, torch.zeros_like(online))
    assert results['replay']['store'] == {
        'teacher': dict(topk=10, num_classes=10, dtype='float16',
                        bytes_per_sample=52)
    }
    assert rows['student alone']['vs_student'] == 1.0
    assert rows['online KD']['vs_student'] == pytest.approx(
        rows['online KD']['step_ms_mean'] /
        rows['student alone']['step_ms_mean'])
    # The config as is stays the main row.
    assert results['step_ms'] == rows['online KD']['step_ms']
    printed = capsys.readouterr().out
    assert '[replayed KD] warm-up 1/1' in printed
    assert printed.rstrip().splitlines()[-2].startswith('Replayed KD: ')


def test_replay_refuses_feature_losses(benchmark_tool, repo_root,
                                       monkeypatch):
    monkeypatch.chdir(repo_root)
    with pytest.raises(
            SystemExit,
            match=r"--replay: Loss 'loss_vitkd_mimic' \(ViTKDMimicLoss\) "
            r"reads features \['t_block0', 't_block1'\] of teacher "
            r"'teacher'"):
        benchmark_tool.main([
            VITKD_CONFIG, '--device', 'cpu', '--replay', '--iters', '1',
            '--warmup', '0', '--batch-size', '2'
        ])


def test_replay_refuses_a_config_without_teacher(benchmark_tool, repo_root,
                                                 monkeypatch):
    monkeypatch.chdir(repo_root)
    with pytest.raises(SystemExit, match='--replay: .* has no teacher'):
        benchmark_tool.main([
            'configs/digits/vit-t4-p8_1xb64_digits.py', '--device', 'cpu',
            '--replay', '--iters', '1', '--warmup', '0'
        ])


@pytest.mark.parametrize('option', [['--reference'], ['--guard', 'both']])
def test_replay_is_not_combined_with_other_turns(benchmark_tool, option,
                                                 capsys):
    with pytest.raises(SystemExit):
        benchmark_tool.parse_args([KD_CONFIG, '--replay', *option])
    assert 'leave out --reference and --guard both' in capsys.readouterr().err
