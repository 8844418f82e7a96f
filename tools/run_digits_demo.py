"""Digits experiments: a teacher, students with and without it, several seeds.

    python tools/run_digits_demo.py [--experiment kd|vitkd] [--seeds 0 1 2]
                                    [--work-dir DIR]

``kd`` (the demo, ``make demo``): for every seed a ResNet teacher, the ViT
student alone and with logit KD. ``vitkd`` (``make vitkd-digits``): a DeiT III
teacher trained once, then the student alone, + ViTKD, + NKD, + ViTKD + NKD
for every seed. Runs use ``tools/train.py``; distilled students are exported
with ``tools/model_converters/extract_student.py``; everything is evaluated
with ``tools/test.py`` on the val split. Prints mean ± std top-1 and writes
``results.json`` / ``results.md`` to the work dir, where the logs and
checkpoints of every run stay.
"""
import argparse
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import List

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


@dataclass
class Run:
    key: str
    label: str
    config: str
    distilled: bool = False  # needs the teacher; exported for testing


@dataclass
class Experiment:
    """A teacher (trained per seed, or once with the first seed) and
    students trained with every seed; all tested on the val split."""
    teacher: Run
    student_config: str
    students: List[Run]
    teacher_per_seed: bool
    work_dir: str


EXPERIMENTS = {
    # `make demo`: logit KD from a CNN teacher into a tiny ViT.
    'kd':
    Experiment(
        teacher=Run('teacher', 'Teacher: ResNet-18 (16 ch)',
                    'configs/digits/resnet18-c16_1xb64_digits.py'),
        student_config='configs/digits/vit-t4-p8_1xb64_digits.py',
        students=[
            Run('baseline', 'Student: ViT 4x64, alone',
                'configs/digits/vit-t4-p8_1xb64_digits.py'),
            Run('kd', 'Student: ViT 4x64, + KD',
                'configs/kd/kd_resnet18-c16_vit-t4-p8_1xb64_digits.py',
                True),
        ],
        teacher_per_seed=True,
        work_dir='work_dirs/digits_demo'),
    # `make vitkd-digits`: ViTKD's feature terms, NKD and both, from a
    # DeiT III teacher into a narrower ViT (configs/vitkd/README.md).
    'vitkd':
    Experiment(
        teacher=Run('teacher', 'Teacher: DeiT III 6x128, 80 epochs (seed 0)',
                    'configs/digits/deit3-6x128-p8_1xb64_digits.py'),
        student_config='configs/digits/vit-4x32-p8_1xb64_digits.py',
        students=[
            Run('baseline', 'Student: ViT 4x32, alone',
                'configs/digits/vit-4x32-p8_1xb64_digits.py'),
            Run('vitkd', 'Student: + ViTKD',
                'configs/vitkd/vitkd_deit3-6x128-p8_vit-4x32-p8_1xb64_digits.py',
                True),
            Run('nkd', 'Student: + NKD',
                'configs/vitkd/nkd_deit3-6x128-p8_vit-4x32-p8_1xb64_digits.py',
                True),
            Run('vitkd_nkd', 'Student: + ViTKD + NKD',
                'configs/vitkd/vitkd-nkd_deit3-6x128-p8_vit-4x32-p8_1xb64_digits.py',
                True),
        ],
        teacher_per_seed=False,
        work_dir='work_dirs/vitkd_digits'),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--experiment', choices=sorted(EXPERIMENTS), default='kd')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument(
        '--work-dir', help='defaults to work_dirs/<experiment work dir>')
    parser.add_argument('--data-root', default='data/digits')
    parser.add_argument(
        '--jobs',
        type=int,
        default=min(2, os.cpu_count() or 1),
        help='runs trained at once (each with cpu_count / jobs threads); '
        'the tiny models use 2 cores better as 2 runs than as 1')
    parser.add_argument(
        '--epochs',
        type=int,
        default=None,
        help='override the configs\' epochs (for a quick look)')
    return parser.parse_args(argv)


class Progress:
    """Numbered steps with elapsed time, one line each (thread-safe)."""

    def __init__(self, total: int):
        self.total, self.done, self.start = total, 0, time.time()
        self.lock = threading.Lock()

    def step(self, text: str):
        with self.lock:
            self.done += 1
            elapsed = time.time() - self.start
            print(f'[{self.done:2d}/{self.total}] {elapsed:6.0f}s  {text}',
                  flush=True)


# Threads per tool process; set by main from --jobs.
_THREADS = {'n': None}


def run(args, log_file: str):
    """Run a tool in a subprocess; its output goes to ``log_file``."""
    os.makedirs(osp.dirname(log_file), exist_ok=True)
    env = dict(os.environ)
    if _THREADS['n'] is not None:
        env['OMP_NUM_THREADS'] = str(_THREADS['n'])
    with open(log_file, 'w') as log:
        proc = subprocess.run([sys.executable, *args], cwd=ROOT, stdout=log,
                              stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        with open(log_file) as log:
            tail = ''.join(log.readlines()[-30:])
        raise RuntimeError(f'{" ".join(args)} failed (log: {log_file}):\n'
                           f'{tail}')


def last_checkpoint(work_dir: str) -> str:
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        return f.read().strip()


def train(config, work_dir, seed, epochs, extra=()):
    options = [f'randomness.seed={seed}', *extra]
    if epochs is not None:
        options += [f'train_cfg.max_epochs={epochs}']
    # Evaluation is done once at the end by tools/test.py.
    options += ['train_cfg.val_interval=1000']
    run(['tools/train.py', config, '--work-dir', work_dir,
         '--cfg-options', *options], osp.join(work_dir, 'train.log'))
    return last_checkpoint(work_dir)


def test(config, checkpoint, work_dir) -> float:
    out = osp.join(work_dir, 'metrics.json')
    run(['tools/test.py', config, checkpoint, '--work-dir', work_dir,
         '--out', out], osp.join(work_dir, 'test.log'))
    with open(out) as f:
        return json.load(f)['accuracy/top1']


def summarise(rows, results: dict, seeds) -> str:
    lines = [
        f'| model | top-1 on digits val (mean ± std, seeds '
        f'{", ".join(map(str, seeds))}) | per seed |', '|---|---|---|'
    ]
    for run_ in rows:
        accs = results[run_.key]
        if len(accs) > 1:
            mean = (f'{statistics.mean(accs):.2f} ± '
                    f'{statistics.stdev(accs):.2f}')
        else:
            mean = f'{accs[0]:.2f}'
        per_seed = ', '.join(f'{a:.2f}' for a in accs)
        lines.append(f'| {run_.label} | {mean} | {per_seed} |')
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    exp = EXPERIMENTS[args.experiment]
    work = osp.abspath(args.work_dir or exp.work_dir)
    jobs = max(1, args.jobs)
    _THREADS['n'] = max(1, (os.cpu_count() or 1) // jobs)
    teacher_seeds = args.seeds if exp.teacher_per_seed else args.seeds[:1]
    progress = Progress(1 + 2 * len(teacher_seeds) +
                        2 * len(exp.students) * len(args.seeds))
    if not osp.isdir(osp.join(args.data_root, 'val')):
        run(['tools/dataset_converters/digits.py', '--out', args.data_root],
            osp.join(work, 'convert.log'))
    progress.step(f'digits dataset ready in {args.data_root}')
    data_opts = [
        f'{loader}.dataset.data_root={args.data_root}'
        for loader in ('train_dataloader', 'val_dataloader',
                       'test_dataloader')
    ]
    teacher_ckpts = {}

    def train_and_test(run_: Run, seed: int) -> float:
        is_teacher = run_ is exp.teacher
        s_dir = osp.join(work, f'{run_.key}_seed{seed}')
        options = list(data_opts)
        if run_.distilled:
            teacher_seed = seed if exp.teacher_per_seed else args.seeds[0]
            options.append(
                f'model.teacher.checkpoint={teacher_ckpts[teacher_seed]}')
        ckpt = train(run_.config, s_dir, seed, args.epochs, options)
        progress.step(f'seed {seed}: {run_.key} trained')
        if is_teacher:
            teacher_ckpts[seed] = ckpt
        if run_.distilled:
            exported = osp.join(s_dir, 'student.pth')
            run(['tools/model_converters/extract_student.py', ckpt,
                 exported], osp.join(s_dir, 'export.log'))
            ckpt = exported
        config = run_.config if is_teacher else exp.student_config
        acc = test(config, ckpt, osp.join(s_dir, 'test'))
        progress.step(f'seed {seed}: {run_.key} top-1 {acc:.2f}')
        return acc

    # Teachers and students without a teacher first, then the distilled
    # students; independent runs go `jobs` at a time.
    first = [(exp.teacher, seed) for seed in teacher_seeds]
    first += [(s, seed) for seed in args.seeds for s in exp.students
              if not s.distilled]
    then = [(s, seed) for seed in args.seeds for s in exp.students
            if s.distilled]
    accs = {}
    with ThreadPoolExecutor(jobs) as pool:
        for batch in (first, then):
            futures = {
                pool.submit(train_and_test, r, seed): (r.key, seed)
                for r, seed in batch
            }
            for future, key in futures.items():
                accs[key] = future.result()
    results = {
        r.key: [accs[(r.key, seed)] for seed in args.seeds
                if (r.key, seed) in accs]
        for r in [exp.teacher, *exp.students]
    }
    table = summarise([exp.teacher, *exp.students], results, args.seeds)
    print('\n' + table)
    with open(osp.join(work, 'results.json'), 'w') as f:
        json.dump(dict(experiment=args.experiment, seeds=args.seeds,
                       epochs=args.epochs, jobs=jobs, **results), f,
                  indent=2)
    with open(osp.join(work, 'results.md'), 'w') as f:
        f.write(table + '\n')
    print(f'\nLogs, checkpoints and results are in {work}')
    return results


if __name__ == '__main__':
    main()
