"""Stored teacher outputs on digits: what top-k < K and float16 storage do
to the KD loss and to the student's accuracy.

    python tools/analysis/replay_study.py [--teacher-checkpoint PTH]
        [--seeds 0 1 2] [--topk 5 2 1] [--work-dir work_dirs/replay_study]
        [--data-root data/digits] [--out JSON] [--epochs N] [--jobs J]
        [--threads N]

1. The teacher of ``tools/run_digits_demo.py --experiment kd`` (ResNet-18,
   16 channels, its config's 15 epochs, seed 0), trained as the demo trains
   it, unless ``--teacher-checkpoint`` gives one.
2. The demo's KD config (``configs/kd/kd_resnet18-c16_vit-t4-p8_1xb64_
   digits.py``) with its training set wrapped in ``SeededAugmentDataset``
   (view seed 0) and ``SeededAugmentHook`` on (``WORK/kd_seeded.py``), and
   the teacher's outputs dumped by ``tools/dump_teacher_outputs.py`` for all
   its epochs: float32 top-K (K = 10 classes: exact), float16 top-K, and
   float32 top-k for each ``--topk``.
3. Loss effect, on the records of epoch 0: the config's KD loss (its
   temperature and weight) per sample, from each store's decoded logits
   and from the exact ones, for two students (randomly initialised, and the
   online KD student of the first seed after training); and
   KL(exact ‖ rebuilt) of the teacher's softened distributions at the
   config's T.
4. Accuracy: the KD student trained online and replaying each store, for
   every seed (``randomness.seed``; the view seed stays 0, so all runs see
   the same augmented views), exported and tested on the val split as the
   demo does.

Prints markdown tables and writes JSON to ``--out`` (default
``WORK/results.json``); every run's logs and checkpoints stay in WORK.
"""
import argparse
import json
import os
import os.path as osp
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.runner import load_checkpoint

from cls_kd.apis import load_config
from cls_kd.models.teachers.stored_outputs import (
    complete_epochs,
    decode_records,
    epoch_file,
    read_manifest,
    record_dtype,
)
from cls_kd.registry import DATASETS, MODELS

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _load_demo():
    """``tools/run_digits_demo.py`` as a module (its runs and configs)."""
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    try:
        import run_digits_demo
    finally:
        sys.path.pop(0)
    return run_digits_demo


demo = _load_demo()
_KD = demo.EXPERIMENTS['kd']
TEACHER_CONFIG = _KD.teacher.config
KD_CONFIG = next(run.config for run in _KD.students if run.distilled)
STUDENT_CONFIG = _KD.student_config
VIEW_SEED = 0
ONLINE = 'online'


@dataclass(frozen=True)
class Store:
    """One dump of the teacher's outputs: storage dtype and top-k."""
    dtype: str
    topk: int

    @property
    def key(self) -> str:
        return f'{self.dtype}_top{self.topk}'


def stores_for(topks: List[int], num_classes: int) -> List[Store]:
    """The exact store (float32, all classes) first, then float16 with all
    classes and float32 with each of ``topks``."""
    for k in topks:
        if not 1 <= k < num_classes:
            raise ValueError(
                f'--topk {k}: must be in [1, {num_classes - 1}] (fewer than '
                f'the {num_classes} classes; top-{num_classes} float32 and '
                f'float16 are always dumped).')
    return [Store('float32', num_classes), Store('float16', num_classes),
            *(Store('float32', k) for k in dict.fromkeys(topks))]


def write_seeded_config(work_dir: str, config: str = KD_CONFIG,
                        view_seed: int = VIEW_SEED) -> str:
    """A child of ``config`` whose training set is wrapped in
    ``SeededAugmentDataset`` (as docs/stored_teacher_outputs.md shows);
    returns its path."""
    path = osp.join(work_dir, 'kd_seeded.py')
    os.makedirs(work_dir, exist_ok=True)
    with open(path, 'w') as f:
        f.write(
            f'# {config} on seeded views (tools/analysis/replay_study.py).\n'
            f'_base_ = [{osp.join(ROOT, config)!r}]\n'
            'train_dataloader = dict(dataset=dict(\n'
            f"    _delete_=True, type='SeededAugmentDataset', "
            f'seed={view_seed},\n'
            '    dataset={{_base_.train_dataloader.dataset}}))\n'
            "custom_hooks = [dict(type='SeededAugmentHook')]\n")
    return path


def read_epoch(directory: str, epoch: int = 0):
    """``(records, manifest)`` of one complete epoch of a store."""
    manifest = read_manifest(directory)
    if epoch not in complete_epochs(manifest):
        raise ValueError(
            f'{directory}: epoch {epoch} is not complete (complete: '
            f'{sorted(complete_epochs(manifest))}); dump it with '
            f'tools/dump_teacher_outputs.py --epochs {epoch}:{epoch + 1}.')
    rec_dtype = record_dtype(manifest['topk'], manifest['num_classes'],
                             manifest['dtype'])
    records = np.memmap(epoch_file(directory, epoch), dtype=rec_dtype,
                        mode='r', shape=(int(manifest['run']['length']), ))
    return np.array(records), manifest


def check_comparable(exact: dict, other: dict, directory: str) -> None:
    """Refuse a reference that is not exact (float32, all classes), or a
    store of another teacher, run or number of classes."""
    if exact['dtype'] != 'float32' or exact['topk'] != exact['num_classes']:
        raise ValueError(
            f'the reference store has dtype={exact["dtype"]!r}, '
            f'topk={exact["topk"]}; it must be float32 with topk = '
            f'num_classes = {exact["num_classes"]} to hold the exact logits.')
    for key in ('num_classes', 'run', 'teacher'):
        ours = {k: v for k, v in other[key].items() if k != 'checkpoint'} \
            if key == 'teacher' else other[key]
        theirs = {k: v for k, v in exact[key].items() if k != 'checkpoint'} \
            if key == 'teacher' else exact[key]
        if ours != theirs:
            raise ValueError(
                f'{directory}: {key} is {ours!r}, the exact store has '
                f'{theirs!r}: the stores must come from one teacher and run.')


def per_sample_loss(loss: torch.nn.Module, logits_s: torch.Tensor,
                    logits_t: torch.Tensor) -> torch.Tensor:
    """The loss module on each sample alone (a batch of one): (B, )."""
    with torch.no_grad():
        return torch.stack([loss(logits_s[i:i + 1], logits_t[i:i + 1])
                            for i in range(len(logits_s))])


def stored_mask(records: np.ndarray, num_classes: int) -> torch.Tensor:
    """(B, K) bool: the classes a record stores (its top-k and target)."""
    classes = torch.from_numpy(records['classes'].astype(np.int64))
    mask = torch.zeros(len(records), num_classes, dtype=torch.bool)
    mask.scatter_(1, classes, True)
    mask[torch.arange(len(records)),
         torch.from_numpy(records['target'].astype(np.int64))] = True
    return mask


def loss_effect(logits_s: torch.Tensor, exact: torch.Tensor,
                records: np.ndarray, loss: torch.nn.Module,
                temperature: float) -> Dict[str, float]:
    """How a store's decoded logits change a KD loss and the softened
    teacher distribution, against the exact teacher logits.

    Args:
        logits_s (Tensor): Student logits, (B, K).
        exact (Tensor): The teacher's exact logits, (B, K).
        records (np.ndarray): The store's records of the same B views.
        loss (nn.Module): The KD loss, ``loss(logits_s, logits_t)``.
        temperature (float): Its temperature T.

    Returns:
        dict: ``loss_exact`` / ``loss_rebuilt`` (mean over samples), the
        per-sample ``abs_mean``, ``abs_max``, ``rel_mean``, ``rel_max`` of
        their difference (relative to the exact loss), ``kl_mean`` and
        ``kl_max`` of KL(softmax(exact / T) ‖ softmax(rebuilt / T)), and
        ``p_stored_err`` the largest difference of a stored class's
        probability at T = 1.
    """
    num_classes = exact.shape[1]
    rebuilt = decode_records(records, num_classes)  # B, K
    l_exact = per_sample_loss(loss, logits_s, exact)
    l_rebuilt = per_sample_loss(loss, logits_s, rebuilt)
    diff = (l_rebuilt - l_exact).abs()
    rel = diff / l_exact.abs().clamp_min(torch.finfo(torch.float32).tiny)
    log_p = F.log_softmax(exact.float() / temperature, dim=1)
    log_q = F.log_softmax(rebuilt / temperature, dim=1)
    kl = (log_p.exp() * (log_p - log_q)).sum(1)  # B
    known = stored_mask(records, num_classes)
    p_err = (rebuilt.softmax(1) - exact.float().softmax(1)).abs()[known]
    return dict(loss_exact=float(l_exact.mean()),
                loss_rebuilt=float(l_rebuilt.mean()),
                abs_mean=float(diff.mean()), abs_max=float(diff.max()),
                rel_mean=float(rel.mean()), rel_max=float(rel.max()),
                kl_mean=float(kl.mean()), kl_max=float(kl.max()),
                p_stored_err=float(p_err.max()))


def kd_term(cfg: Config):
    """``(loss module, temperature)`` of the config's ``KDLoss`` term."""
    terms = {name: spec for name, spec in cfg.model.losses.items()
             if spec.get('type') == 'KDLoss'}
    if len(terms) != 1:
        raise ValueError(
            f'{cfg.filename}: expected one KDLoss in model.losses, found '
            f'{sorted(terms)} among {sorted(cfg.model.losses)}.')
    spec = dict(next(iter(terms.values())))
    spec.pop('inputs', None)  # the distiller's wiring, not the loss's
    loss = MODELS.build(spec)
    return loss, float(loss.temperature)


def build_student(cfg: Config, checkpoint: Optional[str] = None,
                  seed: int = 0) -> torch.nn.Module:
    """The config's student with its data preprocessor, randomly
    initialised (torch seed ``seed``) or loaded from an exported
    student ``checkpoint``; in eval mode."""
    spec = cfg.model.student.to_dict()
    spec.setdefault('data_preprocessor', cfg.data_preprocessor.to_dict())
    torch.manual_seed(seed)
    student = MODELS.build(spec)
    if checkpoint is not None:
        load_checkpoint(student, checkpoint, map_location='cpu',
                        strict=True, logger='silent')
    return student.eval()


def view_logits(cfg: Config, student: torch.nn.Module, epoch: int = 0,
                batch_size: int = 128):
    """``(logits, targets)`` of ``student`` on every seeded training view
    of ``epoch``, in dataset order."""
    dataset = DATASETS.build(cfg.train_dataloader.dataset.to_dict())
    logits, targets = [], []
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            batch = pseudo_collate([
                dataset.view(i, epoch)
                for i in range(start, min(start + batch_size, len(dataset)))
            ])
            data = student.data_preprocessor(batch, False)
            logits.append(student(data['inputs'], mode='tensor').float())
            targets += [int(s.gt_label[0]) for s in data['data_samples']]
    return torch.cat(logits), np.array(targets)


def measure_loss_effect(cfg: Config, dirs: Dict[str, str], exact_key: str,
                        students: Dict[str, torch.nn.Module],
                        epoch: int = 0) -> Dict[str, Dict[str, dict]]:
    """``{student: {store: loss_effect(...)}}`` on the records of
    ``epoch``; ``dirs[exact_key]`` is the float32 top-K store."""
    loss, temperature = kd_term(cfg)
    exact_records, exact_manifest = read_epoch(dirs[exact_key], epoch)
    exact = decode_records(exact_records, exact_manifest['num_classes'])
    stores = {}
    for key, directory in dirs.items():
        records, manifest = read_epoch(directory, epoch)
        check_comparable(exact_manifest, manifest, directory)
        stores[key] = records
    effect = {}
    for name, student in students.items():
        logits_s, targets = view_logits(cfg, student, epoch)
        if not np.array_equal(targets, exact_records['target']):
            raise ValueError(
                f'the views of epoch {epoch} have other labels than the '
                f'records of {dirs[exact_key]}: another dataset?')
        effect[name] = {key: loss_effect(logits_s, exact, records, loss,
                                         temperature)
                        for key, records in stores.items()}
    return effect


def mean_std(values: List[float]) -> str:
    """``'mean ± std'`` (sample std) with 2 decimals; one value alone."""
    if len(values) < 2:
        return f'{values[0]:.2f}'
    return f'{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}'


def loss_table(effect: Dict[str, Dict[str, dict]], temperature: float,
               weight: float) -> str:
    """Markdown table of :func:`measure_loss_effect`'s result."""
    lines = [
        f'| student | store | KD loss, exact (T={temperature:g}, weight '
        f'{weight:g}) | mean abs Δ | max abs Δ | mean rel Δ | max rel Δ | '
        f'KL(exact ‖ rebuilt) at T={temperature:g}, mean | max | '
        f'stored-class p error at T=1 |',
        '|---|---|---|---|---|---|---|---|---|---|'
    ]
    for student, stores in effect.items():
        for key, e in stores.items():
            lines.append(
                f'| {student} | {key} | {e["loss_exact"]:.4f} | '
                f'{e["abs_mean"]:.3g} | {e["abs_max"]:.3g} | '
                f'{e["rel_mean"]:.3g} | {e["rel_max"]:.3g} | '
                f'{e["kl_mean"]:.3g} | {e["kl_max"]:.3g} | '
                f'{e["p_stored_err"]:.3g} |')
    return '\n'.join(lines)


def accuracy_table(accs: Dict[str, List[float]], seeds: List[int]) -> str:
    """Markdown table of top-1 per variant (``online`` or a store key)."""
    lines = [
        f'| KD student | top-1 on digits val (mean ± std, seeds '
        f'{", ".join(map(str, seeds))}) | per seed |', '|---|---|---|'
    ]
    for key, values in accs.items():
        label = ('online (teacher run)' if key == ONLINE else
                 f'replayed, {key}')
        lines.append(f'| {label} | {mean_std(values)} | '
                     f'{", ".join(f"{a:.2f}" for a in values)} |')
    return '\n'.join(lines)


def max_weight_difference(a: str, b: str) -> float:
    """The largest absolute difference of two exported students' weights."""
    sa = torch.load(a, map_location='cpu', weights_only=True)['state_dict']
    sb = torch.load(b, map_location='cpu', weights_only=True)['state_dict']
    if sa.keys() != sb.keys():
        raise ValueError(f'{a} and {b} hold other keys.')
    return max(float((sa[k].double() - sb[k].double()).abs().max())
               if sa[k].numel() else 0.0 for k in sa)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--teacher-checkpoint',
                        help='a trained digits teacher (default: train it)')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2],
                        help='randomness.seed of the student runs')
    parser.add_argument('--topk', type=int, nargs='+', default=[5, 2, 1],
                        help='k < number of classes of the float32 stores')
    parser.add_argument('--work-dir', default='work_dirs/replay_study')
    parser.add_argument('--data-root', default='data/digits')
    parser.add_argument('--out', help='JSON (default: WORK/results.json)')
    parser.add_argument('--epochs', type=int, default=None,
                        help='override the KD config\'s epochs (dumps and '
                        'students; the teacher keeps its own)')
    parser.add_argument('--jobs', type=int, default=1,
                        help='runs at once (default 1: sequential)')
    parser.add_argument('--threads', type=int, default=1,
                        help='threads per run (default 1)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    for name in ('jobs', 'threads', 'epochs'):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise SystemExit(f'replay_study.py: error: --{name} must be >= 1,'
                             f' got {value}.')
    if args.teacher_checkpoint and not osp.isfile(args.teacher_checkpoint):
        raise SystemExit(f'replay_study.py: error: --teacher-checkpoint '
                         f'{args.teacher_checkpoint}: no such file.')
    work = osp.abspath(args.work_dir)
    root = osp.abspath(args.data_root)
    config = write_seeded_config(work)
    cfg = load_config(
        config, {'train_dataloader.dataset.dataset.data_root': root})
    num_classes = int(cfg.data_preprocessor.num_classes)
    try:
        stores = stores_for(args.topk, num_classes)
    except ValueError as e:
        raise SystemExit(f'replay_study.py: error: {e}') from None
    torch.set_num_threads(args.threads)
    demo._THREADS['n'] = args.threads
    variants = [ONLINE, *(s.key for s in stores)]
    progress = demo.Progress(
        (0 if args.teacher_checkpoint else 1) + 1 + len(stores) + 1 +
        len(variants) * len(args.seeds))
    if not osp.isdir(osp.join(root, 'val')):
        demo.run(['tools/dataset_converters/digits.py', '--out', root],
                 osp.join(work, 'convert.log'))
    data_opts = [f'{loader}.dataset.data_root={root}'
                 for loader in ('val_dataloader', 'test_dataloader')]
    start = time.time()

    teacher = args.teacher_checkpoint and osp.abspath(args.teacher_checkpoint)
    if not teacher:
        teacher = demo.train(
            TEACHER_CONFIG, osp.join(work, 'teacher'), 0, None,
            [*data_opts, f'train_dataloader.dataset.data_root={root}'],
            label='teacher seed 0')
        progress.step('teacher trained (seed 0)')
    teacher_top1 = demo.test(TEACHER_CONFIG, teacher,
                             osp.join(work, 'teacher_test'), data_opts)
    progress.step(f'teacher {teacher}: top-1 {teacher_top1:.2f}')

    common = [f'train_dataloader.dataset.dataset.data_root={root}',
              f'model.teacher.checkpoint={teacher}']
    epoch_opts = ([] if args.epochs is None else
                  [f'train_cfg.max_epochs={args.epochs}'])
    dirs = {s.key: osp.join(work, 'stores', s.key) for s in stores}

    def dump(store: Store):
        check = ['--check', '8'] if store == stores[0] else []
        demo.run(['tools/dump_teacher_outputs.py', config, '--out',
                  dirs[store.key], '--topk', str(store.topk), '--dtype',
                  store.dtype, *check, '--cfg-options', *common,
                  *epoch_opts], dirs[store.key] + '.log')
        progress.step(f'dumped {store.key} ({dirs[store.key]})')

    def train_and_test(variant: str, seed: int) -> float:
        s_dir = osp.join(work, f'{variant}_seed{seed}')
        options = [*data_opts, *common]
        if variant != ONLINE:
            options.append(f'model.teacher.outputs={dirs[variant]}')
        ckpt = demo.train(config, s_dir, seed, args.epochs, options,
                          label=f'{variant} seed {seed}')
        exported = osp.join(s_dir, 'student.pth')
        demo.run(['tools/model_converters/extract_student.py', ckpt,
                  exported], osp.join(s_dir, 'export.log'))
        acc = demo.test(STUDENT_CONFIG, exported, osp.join(s_dir, 'test'),
                        data_opts)
        progress.step(f'{variant} seed {seed}: top-1 {acc:.2f}')
        return acc

    demo._LOGS.start()
    try:
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            list(pool.map(dump, stores))
            runs = [(v, s) for s in args.seeds for v in variants]
            futures = [pool.submit(train_and_test, v, s) for v, s in runs]
            accs = {v: [] for v in variants}
            for (variant, _), future in zip(runs, futures):
                accs[variant].append(future.result())
    finally:
        demo._LOGS.stop()

    trained = osp.join(work, f'{ONLINE}_seed{args.seeds[0]}', 'student.pth')
    students = {'random init (torch seed 0)': build_student(cfg),
                f'online KD, seed {args.seeds[0]}, trained':
                build_student(cfg, trained)}
    effect = measure_loss_effect(cfg, dirs, stores[0].key, students)
    progress.step('loss effect measured on the records of epoch 0')
    exact_key = stores[0].key
    same = {seed: max_weight_difference(
        osp.join(work, f'{ONLINE}_seed{seed}', 'student.pth'),
        osp.join(work, f'{exact_key}_seed{seed}', 'student.pth'))
        for seed in args.seeds}

    loss, temperature = kd_term(cfg)
    tables = (loss_table(effect, temperature, loss.loss_weight) + '\n\n' +
              accuracy_table(accs, args.seeds))
    print('\n' + tables)
    print(f'\nlargest |weight difference| online vs replayed {exact_key}, '
          f'per seed: {same}')
    out = args.out or osp.join(work, 'results.json')
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    with open(out, 'w') as f:
        json.dump(dict(
            command=' '.join(['python', 'tools/analysis/replay_study.py',
                              *(sys.argv[1:] if argv is None else argv)]),
            config=KD_CONFIG, seeded_config=config, view_seed=VIEW_SEED,
            seeds=args.seeds, epochs=args.epochs or cfg.train_cfg.max_epochs,
            teacher=dict(checkpoint=teacher, top1=teacher_top1),
            stores=dirs, loss_effect=effect, accuracy=accs,
            weights_online_vs_exact=same,
            minutes=round((time.time() - start) / 60, 1)), f, indent=1)
    with open(osp.splitext(out)[0] + '.md', 'w') as f:
        f.write(tables + '\n')
    print(f'\nResults: {out}; logs and checkpoints in {work}')
    return dict(loss_effect=effect, accuracy=accs)


if __name__ == '__main__':
    main()
