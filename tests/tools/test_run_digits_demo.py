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


@pytest.mark.parametrize('experiment', ['kd', 'vitkd'])
def test_configs_of_every_experiment_exist(repo_root, experiment):
    exp = load_runner(repo_root).EXPERIMENTS[experiment]
    for run in [exp.teacher, *exp.students]:
        assert osp.isfile(osp.join(repo_root, run.config)), run.config
    assert osp.isfile(osp.join(repo_root, exp.student_config))


def test_vitkd_experiment_trains_the_teacher_once(repo_root, tmp_path,
                                                  monkeypatch):
    runner = load_runner(repo_root)
    calls = []

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
            # A different accuracy per run, to check the bookkeeping.
            with open(out, 'w') as f:
                json.dump({'accuracy/top1': float(len(calls))}, f)

    monkeypatch.setattr(runner, 'run', fake_run)
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
    assert len(tests) == 9 and all(c[1] == student_cfg for c in tests[1:])
    assert sum(c[0].endswith('extract_student.py') for c in calls) == 6
    assert len(results['teacher']) == 1
    assert all(len(results[k]) == 2
               for k in ('baseline', 'vitkd', 'nkd', 'vitkd_nkd'))
    summary = (tmp_path / 'work' / 'results.md').read_text()
    assert 'Student: + ViTKD + NKD' in summary and '±' in summary
