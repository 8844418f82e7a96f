"""Digits experiments: a teacher, students with and without it, several seeds.

    python tools/run_digits_demo.py [--experiment kd|vitkd|attndistill|scalekd|
                                                  dearkd|dearkd-p4|
                                                  dearkd-datafree|
                                                  scalekd-sweep|scalekd-width]
                                    [--seeds 0 1 2]
                                    [--work-dir DIR] [--jobs J]
                                    [--threads N]

``kd`` (the demo, ``make demo``): for every seed a ResNet teacher, the ViT
student alone and with logit KD. ``vitkd`` (``make vitkd-digits``): a DeiT III
teacher trained once, then the student alone, + ViTKD, + NKD, + ViTKD + NKD
for every seed. ``attndistill`` (``make attndistill-digits``): a ViT 4x64
teacher, then label-free students (random init, + L_c, + L_c + L_a),
evaluated by k-NN on their class token. ``scalekd`` (``make
scalekd-digits``): a ViT teacher trained once, then a CNN and an
MLP-Mixer student, each alone, + KD and + ScaleKD, for every seed.
``scalekd-sweep`` (``make scalekd-sweep-digits``): the same teacher, then
the CNN student alone, + KD and + ScaleKD with its mimicking weights times
0.1 and 1; ``scalekd-width`` (``make scalekd-width-digits``): alone, + KD
and + ScaleKD with a CNN student of 16 base channels instead of 4.
``dearkd`` (``make dearkd-digits``): a ResNet teacher trained once, then the
demo's ViT alone, + logit KD through a distillation token and DearKD, on
all and on 25 % of the training images (``dearkd-p4``: the same with 4x4
patches, about 3x longer). ``dearkd-datafree``
(``make dearkd-datafree-digits``): the same teacher, then per seed images
synthesised from it (DeepInversion, and + intra-divergence) and a DearKD
student trained on them alone. Runs use
``tools/train.py``; distilled students are exported with
``tools/model_converters/extract_student.py``; everything is evaluated
with ``tools/test.py`` on the val split. Prints mean ± std top-1 and writes
``results.json`` / ``results.md`` to the work dir, where the logs and
checkpoints of every run stay.
"""
import argparse
import json
import os
import os.path as osp
import re
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Callable, Dict, List, Optional, Tuple

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


@dataclass
class Run:
    key: str
    label: str
    config: str
    distilled: bool = False  # needs the teacher; exported for testing
    # Label-free runs are tested as they are (their config evaluates the
    # student by k-NN), not exported.
    export: bool = True
    test_config: Optional[str] = None  # default: own / the student config
    # The plain student config its exported student is tested with (default:
    # the experiment's student_config).
    student_config: Optional[str] = None
    metric: str = 'accuracy/top1'
    knn: bool = False  # its config has k-NN feature banks to point at data
    epochs: Optional[int] = None  # fixed, whatever --epochs says
    options: Tuple[str, ...] = ()
    # Where its config's training dataset takes data_root (a dataset
    # wrapped by SubsetDataset: 'train_dataloader.dataset.dataset').
    train_dataset: str = 'train_dataloader.dataset'
    # Trained on images synthesised from the teacher by tools/synthesize.py
    # with this config (seeded by the run's seed), not on the digits.
    synth_config: Optional[str] = None


@dataclass
class Experiment:
    """A teacher (trained per seed, or once with the first seed) and
    students trained with every seed; all tested on the val split."""
    teacher: Run
    student_config: str
    students: List[Run]
    teacher_per_seed: bool
    work_dir: str


_ATTN_CFG = ('configs/attndistill/'
             'attndistill_vit-4x64-p8_vit-4x32-p8_1xb64_digits.py')

_CNN_CFG = 'configs/digits/resnet18-c4_1xb64_digits.py'
_MIXER_CFG = 'configs/digits/mixer-4x32-p8_1xb64_digits.py'

_DEARKD_TEACHER = Run('teacher',
                      'Teacher: ResNet-18 (16 ch), 15 epochs (seed 0)',
                      'configs/digits/resnet18-c16_1xb64_digits.py')
_DEARKD_VIT = 'configs/digits/vit-4x64-p4_1xb64_digits.py'
_DEARKD = 'configs/dearkd/dearkd_resnet18-c16_vit-4x64-p4_1xb64_digits.py'
_DEARKD_P8 = 'configs/dearkd/dearkd_resnet18-c16_vit-t4-p8_1xb64_digits.py'
_DEARKD_FREE = _DEARKD_P8[:-3] + '-datafree.py'
_SYNTH = 'configs/dearkd/synthesis/'
_QUARTER = dict(train_dataset='train_dataloader.dataset.dataset')


def _dearkd_experiment(student: str, vit: str, deit: str, dearkd: str,
                       work_dir: str) -> 'Experiment':
    """The DearKD digits experiment for one student: alone, + logit KD
    through the distillation token, DearKD; on all and on 25 % of the
    training images (the ``-25pct`` configs, in configs/dearkd/)."""

    def quarter(config):
        return 'configs/dearkd/' + osp.basename(config)[:-3] + '-25pct.py'

    return Experiment(
        teacher=_DEARKD_TEACHER,
        student_config=vit,
        students=[
            Run('vit', f'{student}, alone', vit),
            Run('deit', 'Student: + logit KD (distillation token)', deit,
                True, test_config=deit),
            Run('dearkd', 'Student: DearKD (MHCA + early KD + token)',
                dearkd, True, test_config=dearkd),
            Run('vit_25', f'{student}, alone, 25 % of the images',
                quarter(vit), **_QUARTER),
            Run('deit_25', 'Student: + logit KD, 25 %', quarter(deit), True,
                test_config=deit, **_QUARTER),
            Run('dearkd_25', 'Student: DearKD, 25 %', quarter(dearkd), True,
                test_config=dearkd, **_QUARTER),
        ],
        teacher_per_seed=False,
        work_dir=work_dir)

_SKD_CNN = ('configs/scalekd/'
            'scalekd_vit-4x64-p8_resnet18-c4_1xb64_digits.py')
_KD_CNN = 'configs/scalekd/kd_vit-4x64-p8_resnet18-c4_1xb64_digits.py'
_CNN16_CFG = 'configs/digits/resnet18-c16_1xb64_digits.py'
_SKD_TEACHER = Run('teacher', 'Teacher: ViT 4x64, 40 epochs (seed 0)',
                   'configs/digits/vit-t4-p8_1xb64_digits.py')


def _mimic_scale(scale: float) -> Tuple[str, ...]:
    """Options scaling ScaleKD's four mimicking weights (0.08 / 0.06 per
    view and stage) by ``scale``."""
    weights = (('loss_s3', 0.08), ('loss_s3_alt', 0.06), ('loss_s4', 0.08),
               ('loss_s4_alt', 0.06))
    return tuple(f'model.losses.{term}.loss_weight={weight * scale:g}'
                 for term, weight in weights)


def _cnn16(scalekd: bool) -> Tuple[str, ...]:
    """Options widening the distilled CNN student from 4 to 16 base
    channels (the digits ResNet teacher's width; stage 3 64 x 8 x 8, stage
    4 128 x 4 x 4) and its ScaleKD projectors' inputs with it."""
    opts = ('model.student.backbone.stem_channels=16',
            'model.student.backbone.base_channels=16',
            'model.student.head.in_channels=128')
    if scalekd:
        opts += tuple(f'model.connectors.{name}.in_channels={c}'
                      for name, c in (('cap3', 64), ('cap3_alt', 64),
                                      ('cap4', 128), ('cap4_alt', 128)))
    return opts


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
    # `make attndistill-digits`: label-free AttnDistill from a ViT 4x64
    # teacher, k-NN top-1 of the students' class token
    # (configs/attndistill/README.md).
    'attndistill':
    Experiment(
        teacher=Run('teacher',
                    'Teacher: ViT 4x64, supervised, 40 epochs (seed 0)',
                    'configs/digits/vit-t4-p8_1xb64_digits.py',
                    test_config='configs/attndistill/knn_vit-4x64-p8_digits.py',
                    metric='knn/top1', knn=True),
        student_config='configs/digits/vit-4x32-p8_1xb64_digits.py',
        students=[
            # lr 0: the checkpoint holds the seed's initial weights (the
            # teacher is not needed: random weights, never read).
            Run('random', 'Student: ViT 4x32, random init', _ATTN_CFG,
                export=False, metric='knn/top1', knn=True, epochs=3,
                options=('optim_wrapper.optimizer.lr=0.0',
                         'model.teacher.random_init=True')),
            Run('align', 'Student: + L_c (projector alignment)',
                'configs/attndistill/'
                'attndistill-align_vit-4x64-p8_vit-4x32-p8_1xb64_digits.py',
                True, export=False, metric='knn/top1', knn=True),
            Run('attndistill', 'Student: + L_c + L_a (AttnDistill)',
                _ATTN_CFG, True, export=False, metric='knn/top1', knn=True),
        ],
        teacher_per_seed=False,
        work_dir='work_dirs/attndistill_digits'),
    # `make scalekd-digits`: ScaleKD from a ViT teacher into a CNN and
    # an MLP-Mixer student, against each alone and with logit KD only
    # (configs/scalekd/README.md).
    'scalekd':
    Experiment(
        teacher=Run('teacher', 'Teacher: ViT 4x64, 40 epochs (seed 0)',
                    'configs/digits/vit-t4-p8_1xb64_digits.py'),
        student_config=_CNN_CFG,
        students=[
            Run('cnn', 'CNN student: ResNet-18 (4 ch), alone', _CNN_CFG),
            Run('cnn_kd', 'CNN student: + KD',
                'configs/scalekd/kd_vit-4x64-p8_resnet18-c4_1xb64_'
                'digits.py', True),
            Run('cnn_scalekd', 'CNN student: + ScaleKD',
                'configs/scalekd/scalekd_vit-4x64-p8_resnet18-c4_1xb64_'
                'digits.py', True),
            Run('mixer', 'MLP student: Mixer 4x32, alone', _MIXER_CFG,
                student_config=_MIXER_CFG),
            Run('mixer_kd', 'MLP student: + KD',
                'configs/scalekd/kd_vit-4x64-p8_mixer-4x32-p8_1xb64_'
                'digits.py', True, student_config=_MIXER_CFG),
            Run('mixer_scalekd', 'MLP student: + ScaleKD',
                'configs/scalekd/scalekd_vit-4x64-p8_mixer-4x32-p8_1xb64_'
                'digits.py', True, student_config=_MIXER_CFG),
        ],
        teacher_per_seed=False,
        work_dir='work_dirs/scalekd_digits'),
    # `make scalekd-sweep-digits`: where ScaleKD's mimicking terms stop
    # costing the CNN student: their weights times 1 (published), 0.1 and
    # 0 (logit KD only) (configs/scalekd/README.md, "Small-scale study").
    'scalekd-sweep':
    Experiment(
        teacher=_SKD_TEACHER,
        student_config=_CNN_CFG,
        students=[
            Run('cnn', 'ResNet-18 (4 ch), alone', _CNN_CFG),
            Run('cnn_kd', '4 ch: + KD (mimicking x 0)', _KD_CNN, True),
            Run('cnn_x0.1', '4 ch: + ScaleKD, mimicking x 0.1', _SKD_CNN,
                True, options=_mimic_scale(0.1)),
            Run('cnn_x1', '4 ch: + ScaleKD (published weights)', _SKD_CNN,
                True),
        ],
        teacher_per_seed=False,
        work_dir='work_dirs/scalekd_sweep_digits'),
    # `make scalekd-width-digits`: the same with a 4x wider CNN student
    # (16 base channels, 0.70 M parameters).
    'scalekd-width':
    Experiment(
        teacher=_SKD_TEACHER,
        student_config=_CNN16_CFG,
        students=[
            Run('cnn16', 'ResNet-18 (16 ch), alone', _CNN16_CFG),
            Run('cnn16_kd', '16 ch: + KD', _KD_CNN, True,
                options=_cnn16(False)),
            Run('cnn16_x1', '16 ch: + ScaleKD (published weights)',
                _SKD_CNN, True, options=_cnn16(True)),
        ],
        teacher_per_seed=False,
        work_dir='work_dirs/scalekd_width_digits'),
    # `make dearkd-digits`: DearKD (MHCA + early hidden-state distillation
    # + distillation token, two stages) from a CNN teacher into the demo's
    # ViT (patch 8), against the ViT alone and the token's logit KD alone,
    # on all and on 25 % of the training images (configs/dearkd/README.md).
    'dearkd': _dearkd_experiment(
        'Student: ViT 4x64 (patch 8)',
        'configs/digits/vit-t4-p8_1xb64_digits.py',
        'configs/deit/deit_resnet18-c16_vit-t4-p8-distilled_1xb64_digits.py',
        _DEARKD_P8, 'work_dirs/dearkd_digits'),
    # `make dearkd-p4-digits`: the same with 4x4 patches (an 8x8 token
    # grid), 30 epochs: about 3x the compute of patch 8.
    'dearkd-p4': _dearkd_experiment(
        'Student: ViT 4x64 (patch 4)', _DEARKD_VIT,
        'configs/dearkd/'
        'deit_resnet18-c16_vit-4x64-p4-distilled_1xb64_digits.py', _DEARKD,
        'work_dirs/dearkd_p4_digits'),
    # `make dearkd-datafree-digits`: DearKD students trained only on images
    # synthesised from the CNN teacher (a new set per seed), DeepInversion
    # alone vs + the boundary-preserving intra-divergence term; top-1 on
    # the real val split.
    'dearkd-datafree':
    Experiment(
        teacher=_DEARKD_TEACHER,
        student_config=_DEARKD_P8,
        students=[
            Run('deepinversion', 'Data-free student: DeepInversion images',
                _DEARKD_FREE, True, test_config=_DEARKD_P8,
                synth_config=_SYNTH + 'deepinversion_resnet18-c16_digits.py'),
            Run('intra_div',
                'Data-free student: + intra-divergence images',
                _DEARKD_FREE, True, test_config=_DEARKD_P8,
                synth_config=_SYNTH +
                'deepinversion-intra-div_resnet18-c16_digits.py'),
        ],
        teacher_per_seed=False,
        work_dir='work_dirs/dearkd_datafree_digits'),
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
        '--threads',
        type=int,
        default=None,
        help='threads per run (default: cpu_count / jobs)')
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


class LogProgress:
    """Per-epoch progress of the training runs in flight, read from their
    log files (mmengine's ``Epoch(train) [e][i/n] ... loss: x`` lines, and
    ``max_epochs=`` of the config it prints first).

    A run gets a line when it reaches a new epoch, at most one every
    ``min_interval`` seconds (its last epoch always), e.g.
    ``[teacher seed 0] epoch 3/15, loss 0.5210 (41 s)``.

    Args:
        min_interval (float): Seconds between two lines of one run.
        clock (Callable): The time source (seconds).
        out (Callable): Prints one line.
    """
    EPOCH = re.compile(r'Epoch\(train\)\s*\[(\d+)\]\[\s*\d+/\d+\]')
    LOSS = re.compile(r'\sloss: (\S+)')
    MAX_EPOCHS = re.compile(r'\bmax_epochs=(\d+)')

    def __init__(self, min_interval: float = 20.0,
                 clock: Callable[[], float] = time.time,
                 out: Callable[[str], None] = partial(print, flush=True)):
        self.min_interval, self.clock, self.out = min_interval, clock, out
        self.runs: Dict[str, dict] = {}
        self.lock = threading.Lock()
        self._stop = None

    def watch(self, label: str, log_file: str):
        with self.lock:
            self.runs[label] = dict(
                path=log_file, offset=0, rest='', epoch=0, total=None,
                loss=None, shown=0, last=None, start=self.clock())

    def unwatch(self, label: str) -> List[str]:
        """Stop watching a run, after printing its last epoch if due."""
        with self.lock:
            lines = self._report(label, last=True)
            self.runs.pop(label, None)
        for line in lines:
            self.out(line)
        return lines

    def poll(self) -> List[str]:
        """Read what the logs gained since the last poll; print and
        return the progress lines due."""
        with self.lock:
            lines = [ln for label in self.runs for ln in self._report(label)]
        for line in lines:
            self.out(line)
        return lines

    def _report(self, label: str, last: bool = False) -> List[str]:
        run_ = self.runs.get(label)
        if run_ is None:
            return []
        self._read(run_)
        now = self.clock()
        due = last or run_['last'] is None or run_['epoch'] == run_[
            'total'] or now - run_['last'] >= self.min_interval
        if run_['epoch'] <= run_['shown'] or not due:
            return []
        run_['shown'], run_['last'] = run_['epoch'], now
        total = f"/{run_['total']}" if run_['total'] else ''
        loss = f", loss {run_['loss']}" if run_['loss'] else ''
        return [f"[{label}] epoch {run_['epoch']}{total}{loss} "
                f"({now - run_['start']:.0f} s)"]

    @classmethod
    def _read(cls, run_: dict):
        try:
            with open(run_['path'], errors='replace') as f:
                f.seek(run_['offset'])
                text = f.read()
                run_['offset'] = f.tell()
        except FileNotFoundError:
            return
        *complete, run_['rest'] = (run_['rest'] + text).split('\n')
        for line in complete:
            match = cls.EPOCH.search(line)
            if match:
                run_['epoch'] = int(match.group(1))
                loss = cls.LOSS.search(line)
                run_['loss'] = loss.group(1) if loss else None
            elif run_['total'] is None:
                match = cls.MAX_EPOCHS.search(line)
                if match:
                    run_['total'] = int(match.group(1))

    def start(self, period: float = 2.0):
        """Poll every ``period`` seconds in a daemon thread until
        :meth:`stop`."""
        stop = self._stop = threading.Event()

        def loop():
            while not stop.wait(period):
                self.poll()
        threading.Thread(target=loop, daemon=True).start()

    def stop(self):
        if self._stop is not None:
            self._stop.set()


# Progress of the runs in flight; main starts its polling thread.
_LOGS = LogProgress()
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


def train(config, work_dir, seed, epochs, extra=(), label=None):
    options = [f'randomness.seed={seed}', *extra]
    if epochs is not None:
        options += [f'train_cfg.max_epochs={epochs}']
    # Evaluation is done once at the end by tools/test.py.
    options += ['train_cfg.val_interval=1000']
    log_file = osp.join(work_dir, 'train.log')
    if osp.exists(log_file):  # an earlier run's: not this run's progress
        os.remove(log_file)
    _LOGS.watch(label or work_dir, log_file)
    try:
        run(['tools/train.py', config, '--work-dir', work_dir,
             '--cfg-options', *options], log_file)
    finally:
        _LOGS.unwatch(label or work_dir)
    return last_checkpoint(work_dir)


def synthesise(config, teacher_checkpoint, seed, out) -> str:
    """Images from the teacher (tools/synthesize.py); returns the folder
    to train on (its ``train`` split). Resumes an interrupted synthesis."""
    log_file = osp.join(out + '.log')
    run(['tools/synthesize.py', config, '--out', out, '--cfg-options',
         f'teacher.checkpoint={teacher_checkpoint}',
         f'synthesis.seed={seed}'], log_file)
    return out


def test(config, checkpoint, work_dir, options=(),
         metric='accuracy/top1') -> float:
    out = osp.join(work_dir, 'metrics.json')
    # No loader worker for 359 images: one process start less per test.
    options = [*options, 'test_dataloader.num_workers=0',
               'test_dataloader.persistent_workers=False']
    extra = ['--cfg-options', *options]
    run(['tools/test.py', config, checkpoint, '--work-dir', work_dir,
         '--out', out, *extra], osp.join(work_dir, 'test.log'))
    with open(out) as f:
        return json.load(f)[metric]


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
    _THREADS['n'] = args.threads or max(1, (os.cpu_count() or 1) // jobs)
    teacher_seeds = args.seeds if exp.teacher_per_seed else args.seeds[:1]
    synthesised = sum(1 for s in exp.students if s.synth_config)
    progress = Progress(1 + 2 * len(teacher_seeds) +
                        (2 * len(exp.students) + synthesised) *
                        len(args.seeds))
    if not osp.isdir(osp.join(args.data_root, 'val')):
        run(['tools/dataset_converters/digits.py', '--out', args.data_root],
            osp.join(work, 'convert.log'))
    progress.step(f'digits dataset ready in {args.data_root}')
    data_opts = [
        f'{loader}.dataset.data_root={args.data_root}'
        for loader in ('val_dataloader', 'test_dataloader')
    ]
    teacher_ckpts = {}

    def train_and_test(run_: Run, seed: int) -> float:
        is_teacher = run_ is exp.teacher
        s_dir = osp.join(work, f'{run_.key}_seed{seed}')
        options = list(data_opts)
        teacher_seed = seed if exp.teacher_per_seed else args.seeds[0]
        if run_.distilled:
            options.append(
                f'model.teacher.checkpoint={teacher_ckpts[teacher_seed]}')
        test_options = [*options, *run_.options]
        train_root = args.data_root
        if run_.synth_config:
            train_root = synthesise(run_.synth_config,
                                    teacher_ckpts[teacher_seed], seed,
                                    osp.join(s_dir, 'synth'))
            progress.step(f'seed {seed}: {run_.key} images synthesised')
        options.append(f'{run_.train_dataset}.data_root={train_root}')
        if run_.knn:
            test_options += [
                f'test_cfg.bank_dataloader.dataset.data_root={args.data_root}'
            ]
            if not is_teacher:
                options += [f'val_cfg.bank_dataloader.dataset.data_root='
                            f'{args.data_root}']
        epochs = run_.epochs if run_.epochs is not None else args.epochs
        ckpt = train(run_.config, s_dir, seed, epochs,
                     [*options, *run_.options],
                     label=f'{run_.key} seed {seed}')
        progress.step(f'seed {seed}: {run_.key} trained')
        if is_teacher:
            teacher_ckpts[seed] = ckpt
        if run_.distilled and run_.export:
            exported = osp.join(s_dir, 'student.pth')
            run(['tools/model_converters/extract_student.py', ckpt,
                 exported], osp.join(s_dir, 'export.log'))
            ckpt = exported
        config = run_.test_config or (
            run_.config if is_teacher or not run_.export else
            run_.student_config or exp.student_config)
        acc = test(config, ckpt, osp.join(s_dir, 'test'),
                   test_options if run_.test_config or not run_.export
                   else (), run_.metric)
        progress.step(f'seed {seed}: {run_.key} top-1 {acc:.2f}')
        return acc

    # Teachers and students without a teacher first, then the distilled
    # students; independent runs go `jobs` at a time.
    first = [(exp.teacher, seed) for seed in teacher_seeds]
    first += [(s, seed) for seed in args.seeds for s in exp.students
              if not s.distilled]
    # The students listed last are usually the costliest (the full
    # method): started first, they leave no long run alone at the end.
    then = [(s, seed) for seed in args.seeds for s in exp.students[::-1]
            if s.distilled]
    accs = {}
    _LOGS.start()
    try:
        with ThreadPoolExecutor(jobs) as pool:
            for batch in (first, then):
                futures = {
                    pool.submit(train_and_test, r, seed): (r.key, seed)
                    for r, seed in batch
                }
                for future, key in futures.items():
                    accs[key] = future.result()
    finally:
        _LOGS.stop()
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
