"""The digits experiment runner's orchestration, with the tool runs
replaced by a recorder (the runs themselves are covered by the config and
train/export tests)."""
import importlib.util
import json
import os
import os.path as osp

import pytest


def load_runner(repo_root):
    path = osp.join(repo_root, 'tools', 'run_digits_demo.py')
    spec = importlib.util.spec_from_file_location('run_digits_demo', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('experiment', [
    'kd', 'vitkd', 'attndistill', 'scalekd', 'dearkd', 'dearkd-p4',
    'dearkd-datafree'
])
def test_configs_of_every_experiment_exist(repo_root, experiment):
    exp = load_runner(repo_root).EXPERIMENTS[experiment]
    for run in [exp.teacher, *exp.students]:
        for config in (run.config, run.test_config, run.student_config,
                       run.synth_config):
            assert config is None or osp.isfile(osp.join(
                repo_root, config)), config
    assert osp.isfile(osp.join(repo_root, exp.student_config))


def fake_tools(calls):
    """A stand-in for ``run``: records the command, writes what the next
    step reads (last_checkpoint, metrics)."""

    def fake_run(args, log_file):
        calls.append(args)
        tool = args[0]
        if tool == 'tools/train.py':
            work_dir = args[args.index('--work-dir') + 1]
            os.makedirs(work_dir, exist_ok=True)
            with open(osp.join(work_dir, 'last_checkpoint'), 'w') as f:
                f.write(osp.join(work_dir, 'epoch_1.pth'))
        elif tool == 'tools/test.py':
            out = args[args.index('--out') + 1]
            os.makedirs(osp.dirname(out), exist_ok=True)
            with open(out, 'w') as f:
                json.dump({'accuracy/top1': float(len(calls))}, f)

    return fake_run


def test_dearkd_experiments_route_data(repo_root, tmp_path, monkeypatch):
    """25 % runs set the wrapped dataset's root; data-free runs first
    synthesise from the teacher (seeded by the run) and train on that."""
    runner = load_runner(repo_root)
    calls = []
    monkeypatch.setattr(runner, 'run', fake_tools(calls))
    data_root = tmp_path / 'digits'
    (data_root / 'val').mkdir(parents=True)
    work = tmp_path / 'work'
    runner.main(['--experiment', 'dearkd', '--seeds', '0', '--work-dir',
                 str(work), '--data-root', str(data_root)])
    trains = {c[c.index('--work-dir') + 1].split(os.sep)[-1]: c
              for c in calls if c[0] == 'tools/train.py'}
    assert (f'train_dataloader.dataset.dataset.data_root={data_root}'
            in trains['dearkd_25_seed0'])
    assert (f'train_dataloader.dataset.data_root={data_root}'
            in trains['dearkd_seed0'])
    calls.clear()
    work = tmp_path / 'free'
    runner.main(['--experiment', 'dearkd-datafree', '--seeds', '1',
                 '--work-dir', str(work), '--data-root', str(data_root)])
    synth = [c for c in calls if c[0] == 'tools/synthesize.py']
    assert len(synth) == 2
    teacher = osp.join(str(work), 'teacher_seed1', 'epoch_1.pth')
    for c in synth:
        assert f'teacher.checkpoint={teacher}' in c
        assert 'synthesis.seed=1' in c
    train = [c for c in calls if c[0] == 'tools/train.py'
             and 'intra_div_seed1' in c[c.index('--work-dir') + 1]][0]
    folder = osp.join(str(work), 'intra_div_seed1', 'synth')
    assert f'train_dataloader.dataset.data_root={folder}' in train
    assert calls.index(train) > calls.index(
        [c for c in synth if 'intra-div' in c[1]][0])


def test_vitkd_experiment_trains_the_teacher_once(repo_root, tmp_path,
                                                  monkeypatch):
    runner = load_runner(repo_root)
    calls = []
    monkeypatch.setattr(runner, 'run', fake_tools(calls))
    data_root = tmp_path / 'digits'
    (data_root / 'val').mkdir(parents=True)
    results = runner.main([
        '--experiment', 'vitkd', '--seeds', '0', '1', '--work-dir',
        str(tmp_path / 'work'), '--data-root', str(data_root)
    ])
    trains = [c for c in calls if c[0] == 'tools/train.py']
    teacher_cfg = runner.EXPERIMENTS['vitkd'].teacher.config
    assert sum(c[1] == teacher_cfg for c in trains) == 1
    assert len(trains) == 1 + 4 * 2
    teacher_ckpt = osp.join(str(tmp_path / 'work'), 'teacher_seed0',
                            'epoch_1.pth')
    distilled = [c for c in trains if 'vitkd/' in c[1]]
    assert len(distilled) == 6  # vitkd, nkd, vitkd-nkd for two seeds
    assert all(f'model.teacher.checkpoint={teacher_ckpt}' in c
               for c in distilled)
    assert all('randomness.seed=1' in c for c in trains
               if '_seed1' in c[c.index('--work-dir') + 1])
    # Distilled students are exported, then tested with the student config.
    tests = [c for c in calls if c[0] == 'tools/test.py']
    student_cfg = runner.EXPERIMENTS['vitkd'].student_config
    # Runs go two at a time: the teacher's test need not come first.
    assert len(tests) == 9
    assert sorted(c[1] for c in tests) == sorted([teacher_cfg] +
                                                 [student_cfg] * 8)
    assert sum(c[0].endswith('extract_student.py') for c in calls) == 6
    assert len(results['teacher']) == 1
    assert all(len(results[k]) == 2
               for k in ('baseline', 'vitkd', 'nkd', 'vitkd_nkd'))
    summary = (tmp_path / 'work' / 'results.md').read_text()
    assert 'Student: + ViTKD + NKD' in summary and '±' in summary


def test_progress_lines_follow_a_growing_log(repo_root, tmp_path):
    runner = load_runner(repo_root)
    now = [0.0]
    printed = []
    logs = runner.LogProgress(min_interval=10, clock=lambda: now[0],
                              out=printed.append)
    log = tmp_path / 'train.log'
    logs.watch('teacher seed 0', str(log))
    assert logs.poll() == []  # no log file yet

    def grow(text, at):
        now[0] = at
        with open(log, 'a') as f:
            f.write(text)
        return logs.poll()

    line = ('11/30 00:20:{:02d} - mmengine - INFO - Epoch(train)  [{}][{}/23]'
            '  lr: 1.0e-03  time: 0.18  loss: {}  loss_kd: 0.1\n')
    assert grow('train_cfg = dict(by_epoch=True, max_epochs=3)\n', 1) == []
    assert grow(line.format(2, 1, 10, '2.3010'), 2) == [
        '[teacher seed 0] epoch 1/3, loss 2.3010 (2 s)'
    ]
    # Epoch 2 begins 3 s later: within min_interval, not shown yet.
    assert grow(line.format(5, 1, 20, '2.1') + line.format(8, 2, 10, '1.9'),
                5) == []
    # A line cut in the middle is read once it is complete.
    partial_line = line.format(9, 2, 20, '1.7500')
    assert grow(partial_line[:40], 13) == ['[teacher seed 0] epoch 2/3, '
                                           'loss 1.9 (13 s)']
    assert grow(partial_line[40:], 14) == []
    # The last epoch is always shown, then the run is dropped.
    assert grow(line.format(10, 3, 10, '1.2000'), 15) == [
        '[teacher seed 0] epoch 3/3, loss 1.2000 (15 s)'
    ]
    assert logs.unwatch('teacher seed 0') == [] and logs.runs == {}
    assert printed == [
        '[teacher seed 0] epoch 1/3, loss 2.3010 (2 s)',
        '[teacher seed 0] epoch 2/3, loss 1.9 (13 s)',
        '[teacher seed 0] epoch 3/3, loss 1.2000 (15 s)'
    ]


def test_unwatch_shows_a_held_back_epoch(repo_root, tmp_path):
    runner = load_runner(repo_root)
    now = [0.0]
    logs = runner.LogProgress(min_interval=60, clock=lambda: now[0],
                              out=lambda s: None)
    log = tmp_path / 'train.log'
    log.write_text('Epoch(train) [1][10/23]  loss: 2.0\n')
    logs.watch('kd seed 1', str(log))
    assert logs.poll() == ['[kd seed 1] epoch 1, loss 2.0 (0 s)']
    with open(log, 'a') as f:
        f.write('Epoch(train) [2][10/23]  loss: 1.5\n')
    now[0] = 5.0
    assert logs.poll() == []
    assert logs.unwatch('kd seed 1') == ['[kd seed 1] epoch 2, loss 1.5 (5 s)']
