"""The digits demo: teacher, student alone, student + logit KD, several seeds.

    python tools/run_digits_demo.py [--seeds 0 1 2] [--work-dir DIR]

For every seed it trains the teacher, the student baseline and the student
distilled from that seed's teacher with ``tools/train.py``, exports the
distilled student with ``tools/model_converters/extract_student.py``, and
evaluates all three with ``tools/test.py`` on the val split. It then prints
mean ± std top-1 and writes ``results.json`` / ``results.md`` to the work dir.
Logs and checkpoints of every run stay under the work dir.
"""
import argparse
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TEACHER_CFG = 'configs/digits/resnet18-c16_1xb64_digits.py'
STUDENT_CFG = 'configs/digits/vit-t4-p8_1xb64_digits.py'
KD_CFG = 'configs/kd/kd_resnet18-c16_vit-t4-p8_1xb64_digits.py'
ROWS = [('teacher', 'Teacher: ResNet-18 (16 ch)'),
        ('baseline', 'Student: ViT 4x64, alone'),
        ('kd', 'Student: ViT 4x64, + KD')]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--work-dir', default='work_dirs/digits_demo')
    parser.add_argument('--data-root', default='data/digits')
    parser.add_argument(
        '--epochs',
        type=int,
        default=None,
        help='override the configs\' epochs (for a quick look)')
    return parser.parse_args(argv)


class Progress:
    """Numbered steps with elapsed time, one line each."""

    def __init__(self, total: int):
        self.total, self.done, self.start = total, 0, time.time()

    def step(self, text: str):
        self.done += 1
        elapsed = time.time() - self.start
        print(f'[{self.done:2d}/{self.total}] {elapsed:6.0f}s  {text}',
              flush=True)


def run(args, log_file: str):
    """Run a tool in a subprocess; its output goes to ``log_file``."""
    os.makedirs(osp.dirname(log_file), exist_ok=True)
    with open(log_file, 'w') as log:
        proc = subprocess.run([sys.executable, *args], cwd=ROOT, stdout=log,
                              stderr=subprocess.STDOUT)
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


def summarise(results: dict, seeds) -> str:
    lines = [
        f'| model | top-1 on digits val (mean ± std, seeds '
        f'{", ".join(map(str, seeds))}) | per seed |', '|---|---|---|'
    ]
    for key, label in ROWS:
        accs = results[key]
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        per_seed = ', '.join(f'{a:.2f}' for a in accs)
        lines.append(f'| {label} | {statistics.mean(accs):.2f} ± {std:.2f} '
                     f'| {per_seed} |')
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    work = osp.abspath(args.work_dir)
    progress = Progress(1 + 6 * len(args.seeds))
    if not osp.isdir(osp.join(args.data_root, 'val')):
        run(['tools/dataset_converters/digits.py', '--out', args.data_root],
            osp.join(work, 'convert.log'))
    progress.step(f'digits dataset ready in {args.data_root}')
    data_opts = [
        f'{loader}.dataset.data_root={args.data_root}'
        for loader in ('train_dataloader', 'val_dataloader',
                       'test_dataloader')
    ]
    results = {key: [] for key, _ in ROWS}
    for seed in args.seeds:
        runs = {key: osp.join(work, f'{key}_seed{seed}') for key, _ in ROWS}
        teacher_ckpt = train(TEACHER_CFG, runs['teacher'], seed, args.epochs,
                             data_opts)
        progress.step(f'seed {seed}: teacher trained')
        base_ckpt = train(STUDENT_CFG, runs['baseline'], seed, args.epochs,
                          data_opts)
        progress.step(f'seed {seed}: student baseline trained')
        kd_opts = [*data_opts, f'model.teacher.checkpoint={teacher_ckpt}']
        kd_ckpt = train(KD_CFG, runs['kd'], seed, args.epochs, kd_opts)
        progress.step(f'seed {seed}: student + KD trained')
        student_ckpt = osp.join(runs['kd'], 'student.pth')
        run(['tools/model_converters/extract_student.py', kd_ckpt,
             student_ckpt], osp.join(runs['kd'], 'export.log'))
        for key, config, ckpt in (('teacher', TEACHER_CFG, teacher_ckpt),
                                  ('baseline', STUDENT_CFG, base_ckpt),
                                  ('kd', STUDENT_CFG, student_ckpt)):
            acc = test(config, ckpt, osp.join(runs[key], 'test'))
            results[key].append(acc)
            progress.step(f'seed {seed}: {key} top-1 {acc:.2f}')
    table = summarise(results, args.seeds)
    print('\n' + table)
    with open(osp.join(work, 'results.json'), 'w') as f:
        json.dump(dict(seeds=args.seeds, epochs=args.epochs, **results), f,
                  indent=2)
    with open(osp.join(work, 'results.md'), 'w') as f:
        f.write(table + '\n')
    print(f'\nLogs, checkpoints and results are in {work}')
    return results


if __name__ == '__main__':
    main()
