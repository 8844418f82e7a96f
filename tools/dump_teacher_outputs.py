"""Run a config's teacher once over the seeded training views of some epochs
and store its outputs, for training runs that replay them.

    python tools/dump_teacher_outputs.py CONFIG --out DIR [--epochs A:B]
        [--topk K] [--dtype float16|float32] [--teacher NAME]
        [--world-size W] [--check N] [--cfg-options key=value ...]

CONFIG's training set must be wrapped in ``SeededAugmentDataset`` (each
view is rebuilt from ``(seed, epoch, index)``); the teacher (the first, or
``--teacher``) runs in eval mode, float32, on the views of epochs
[A, B) (0-based; all of ``train_cfg.max_epochs`` by default), batched and
re-normalised as in training. Per epoch, ``DIR/epoch_XXXX.bin`` holds one
record per sample (``cls_kd.models.distillers.stored_outputs.record_dtype``:
top-k logits, their classes, the target's logit, the log-sum-exp, the
target), and ``DIR/manifest.json`` the digests, run facts, versions and a
complete flag per epoch, set once the epoch's file is flushed. Epochs
already complete are skipped, so a killed dump resumes where it stopped (an
epoch without its flag is redone). ``--check N`` recomputes N stored
records (of random complete epochs) and prints the largest difference.

Runs in one process: ``--world-size`` is the number of processes of the
training runs that will read the outputs (recorded and checked there); a
launch with several processes is refused. Train with
``--cfg-options model.teacher.outputs=DIR``; see
``docs/stored_teacher_outputs.md``.
"""
import argparse
import hashlib
import os
import os.path as osp
import random
import time

import mmengine
import mmpretrain
import numpy as np
import torch
from mmengine.config import Config, DictAction
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope
from mmengine.runner import Runner, set_random_seed

import cls_kd
from cls_kd.datasets import find_seeded_dataset, run_facts
from cls_kd.models.distillers.base import teacher_forward
from cls_kd.models.distillers.stored_outputs import (
    FORMAT,
    complete_epochs,
    decode_records,
    encode_records,
    epoch_file,
    read_manifest,
    record_dtype,
    teacher_digest,
    write_manifest,
)
from cls_kd.registry import MODELS
from cls_kd.utils import resolve_teacher_paths
from cls_kd.utils.config_paths import config_arg


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Store a teacher\'s outputs on seeded training views.')
    parser.add_argument('config', type=config_arg, help='train config file')
    parser.add_argument('--out', required=True, help='output directory')
    parser.add_argument(
        '--epochs', help='A:B, the 0-based epochs [A, B) to dump (default: '
        'all of train_cfg.max_epochs)')
    parser.add_argument(
        '--topk', type=int, default=10,
        help='logits kept per sample (capped at the number of classes; '
        'default 10)')
    parser.add_argument('--dtype', choices=['float16', 'float32'],
                        default='float16', help='storage of the logits')
    parser.add_argument('--teacher', help='teacher name (default: first)')
    parser.add_argument(
        '--world-size', type=int, default=1,
        help='number of processes of the training runs that replay them')
    parser.add_argument('--check', type=int, default=0, metavar='N',
                        help='recompute N records and print the largest '
                        'difference')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries')
    return parser.parse_args(argv)


def _fail(message: str):
    raise SystemExit(f'dump_teacher_outputs.py: error: {message}')


def epoch_range(text, max_epochs: int) -> range:
    """``'A:B'`` -> ``range(A, B)``; None -> all epochs."""
    if text is None:
        return range(max_epochs)
    try:
        first, end = (int(x) for x in text.split(':'))
    except ValueError:
        _fail(f'--epochs must be A:B (0-based, B excluded), got {text!r}.')
    if not 0 <= first < end:
        _fail(f'--epochs {text}: need 0 <= A < B.')
    return range(first, end)


def build(args):
    """The config, distiller, training dataloader and seeded dataset."""
    if int(os.environ.get('WORLD_SIZE', '1')) > 1:
        _fail('runs in one process; launch it with python, and give the '
              'training world size with --world-size.')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cls_kd.register_all_modules(init_default_scope=False)
    init_default_scope(cfg.get('default_scope', 'cls_kd'))
    resolve_teacher_paths(cfg)
    seed = (cfg.get('randomness') or {}).get('seed')
    if seed is not None:  # a random_init teacher as the training run's
        set_random_seed(seed)
    model_cfg = cfg.model.to_dict()
    teachers = model_cfg.get('teachers') or {
        'teacher': model_cfg.get('teacher')}
    if not any(teachers.values()):
        _fail(f'{args.config} has no teacher (model.teacher/teachers).')
    for spec in teachers.values():
        spec.pop('outputs', None)  # this tool runs the teacher
    # As the Runner does: the top-level preprocessor is the student's.
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor',
                             cfg.data_preprocessor.to_dict())
    model_cfg.update(dry_run=False)
    model = MODELS.build(model_cfg)
    name = args.teacher or model.teachers.first
    if name not in model.teachers:
        _fail(f'--teacher {name!r}: teachers are {sorted(model.teachers)}.')
    loader_cfg = cfg.train_dataloader.to_dict()
    loader = Runner.build_dataloader(loader_cfg, seed=seed)
    dataset = find_seeded_dataset(loader.dataset)
    if dataset is None:
        _fail("the training set is not wrapped in SeededAugmentDataset: set "
              "train_dataloader.dataset=dict(type='SeededAugmentDataset', "
              'dataset=<the dataset>).')
    # On the CPU, as the distiller that replays computes it.
    digest = teacher_digest(model.teachers[name],
                            lambda x: model.teachers.inputs_for(name, x))
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    return cfg, model.to(device).eval(), name, loader, dataset, digest


def new_manifest(args, cfg, name, digest, loader, num_classes) -> dict:
    facts = dict(run_facts(loader), world_size=args.world_size)
    spec = cfg.model.get('teachers', {}).get(name) if cfg.model.get(
        'teachers') else cfg.model.teacher
    return dict(
        format=FORMAT,
        teacher=dict(
            name=name, checkpoint=spec.get('checkpoint'), digest=digest),
        config=dict(file=osp.abspath(args.config),
                    digest=hashlib.sha256(
                        cfg.pretty_text.encode()).hexdigest()[:16]),
        run=facts, num_classes=num_classes,
        topk=min(args.topk, num_classes), dtype=args.dtype,
        versions=dict(cls_kd=cls_kd.__version__, torch=torch.__version__,
                      mmengine=mmengine.__version__,
                      mmpretrain=mmpretrain.__version__,
                      numpy=np.__version__),
        epochs={})


def check_same(old: dict, new: dict, out: str) -> None:
    """Refuse to add to a store written for another teacher or run."""
    for key in ('format', 'num_classes', 'topk', 'dtype', 'teacher', 'run'):
        ours = {k: v for k, v in new[key].items() if k != 'checkpoint'} \
            if key == 'teacher' else new[key]
        theirs = {k: v for k, v in old.get(key, {}).items()
                  if k != 'checkpoint'} if key == 'teacher' else old.get(key)
        if ours != theirs:
            _fail(f'{out} holds outputs with {key}={theirs!r}, this dump '
                  f'would write {ours!r}: choose another --out or delete it.')


def teacher_logits(model, name, batch):
    data = model.data_preprocessor(batch, training=False)
    teacher = model.teachers[name]
    with torch.no_grad():
        return teacher_forward(
            teacher, model.teachers.inputs_for(name, data['inputs'])), \
            data['data_samples']


def targets_of(samples) -> torch.Tensor:
    return torch.tensor([int(s.gt_label[0]) for s in samples])


def dump_epoch(model, name, loader, dataset, manifest, out, epoch) -> None:
    rec_dtype = record_dtype(manifest['topk'], manifest['num_classes'],
                             manifest['dtype'])
    length = len(dataset)
    dataset.set_epoch(epoch)
    if hasattr(loader.sampler, 'set_epoch'):
        loader.sampler.set_epoch(epoch)
    records = np.memmap(epoch_file(out, epoch), dtype=rec_dtype, mode='w+',
                        shape=(length, ))
    seen = np.zeros(length, dtype=bool)
    start, total = time.time(), len(loader)
    for i, batch in enumerate(loader):
        logits, samples = teacher_logits(model, name, batch)
        index = np.array([s.metainfo['replay_index'] for s in samples])
        records[index] = encode_records(logits, targets_of(samples),
                                        rec_dtype)
        seen[index] = True
        if (i + 1) % 20 == 0 or i + 1 == total:
            elapsed = time.time() - start
            eta = elapsed / (i + 1) * (total - i - 1)
            print(f'epoch {epoch}: batch {i + 1}/{total}, {elapsed:.0f} s, '
                  f'ETA {eta:.0f} s', flush=True)
    if not seen.all():
        _fail(f'epoch {epoch}: the sampler gave {int(seen.sum())} of '
              f'{length} samples; use a sampler that visits each once.')
    records.flush()
    del records
    manifest['epochs'][str(epoch)] = dict(
        complete=True, seconds=round(time.time() - start, 1))
    write_manifest(out, manifest)


def check_records(model, name, dataset, manifest, out, count) -> float:
    """Recompute ``count`` random stored records; the largest absolute
    difference of the decoded logits at the stored classes."""
    done = sorted(complete_epochs(manifest))
    if not done:
        _fail('--check: no complete epoch in ' + out)
    rng = random.Random(0)
    picks = [(rng.choice(done), rng.randrange(len(dataset)))
             for _ in range(count)]
    rec_dtype = record_dtype(manifest['topk'], manifest['num_classes'],
                             manifest['dtype'])
    logits, _ = teacher_logits(model, name, pseudo_collate(
        [dataset.view(i, e) for e, i in picks]))
    stored = np.stack([
        np.memmap(epoch_file(out, e), dtype=rec_dtype, mode='r',
                  shape=(len(dataset), ))[i] for e, i in picks])
    decoded = decode_records(stored, manifest['num_classes'])
    known = torch.zeros_like(decoded, dtype=torch.bool).scatter_(
        1, torch.from_numpy(stored['classes'].astype(np.int64)), True)
    diff = (decoded - logits.float().cpu()).abs()[known]
    return float(diff.max())


def main(argv=None):
    args = parse_args(argv)
    if args.topk < 1 or args.world_size < 1 or args.check < 0:
        _fail(f'--topk and --world-size must be >= 1 and --check >= 0; got '
              f'{args.topk}, {args.world_size}, {args.check}.')
    cfg, model, name, loader, dataset, digest = build(args)
    num_classes = teacher_logits(model, name, pseudo_collate(
        [dataset.view(0, 0)]))[0].shape[1]
    manifest = new_manifest(args, cfg, name, digest, loader, num_classes)
    os.makedirs(args.out, exist_ok=True)
    if osp.exists(osp.join(args.out, 'manifest.json')):
        old = read_manifest(args.out)
        check_same(old, manifest, args.out)
        manifest['epochs'] = old.get('epochs', {})
    write_manifest(args.out, manifest)
    epochs = epoch_range(args.epochs, cfg.train_cfg.max_epochs)
    todo = [e for e in epochs if e not in complete_epochs(manifest)]
    size = record_dtype(manifest['topk'], num_classes,
                        manifest['dtype']).itemsize * len(dataset)
    print(f'{len(dataset)} samples x {size // len(dataset)} B = '
          f'{size / 2**20:.2f} MiB per epoch; {len(todo)} of {len(epochs)} '
          f'epochs to dump ({size * len(todo) / 2**20:.2f} MiB), top-'
          f'{manifest["topk"]} of {num_classes} classes in '
          f'{manifest["dtype"]}', flush=True)
    for epoch in epochs:
        if epoch in complete_epochs(manifest):
            print(f'epoch {epoch}: complete, skipped', flush=True)
            continue
        dump_epoch(model, name, loader, dataset, manifest, args.out, epoch)
    if args.check:
        diff = check_records(model, name, dataset, manifest, args.out,
                             args.check)
        print(f'--check {args.check}: largest difference of a stored logit '
              f'{diff:.3g}', flush=True)
    return manifest


if __name__ == '__main__':
    main()
