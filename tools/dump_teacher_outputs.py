"""Run a config's teacher once over the seeded training views of some epochs
and store its outputs, for training runs that replay them.

    python tools/dump_teacher_outputs.py CONFIG --out DIR [--epochs A:B]
        [--topk K] [--dtype float16|float32] [--teacher NAME]
        [--world-size W] [--check N] [--cfg-options key=value ...]
    bash tools/dist_dump.sh CONFIG GPUS --out DIR [options]

CONFIG's training set must be wrapped in ``SeededAugmentDataset`` (each view is
rebuilt from ``(seed, epoch, index)``); the teacher (the first, or
``--teacher``) runs in eval mode, float32, on the views of epochs [A, B)
(0-based; all of ``train_cfg.max_epochs`` by default), in the batches the
training run's processes will see (the sampler of each of ``--world-size``
ranks, in order) and re-normalised as in training. With batch augments
(Mixup/CutMix) the teacher sees the mixed batch, mixed from the batch's key
(``cls_kd.datasets.SeededBatchAugments``), and each record also holds the batch
key and the mixed label's fingerprint. Per epoch, ``DIR/epoch_XXXX.bin`` holds
one record per sample
(``cls_kd.models.teachers.stored_outputs.record_dtype``: top-k logits, their
classes, the target's logit, the log-sum-exp, the target), and
``DIR/manifest.json`` the digests, run facts, versions and a complete flag per
epoch, set once the epoch's file is flushed. Epochs already complete are
skipped, so a killed dump resumes where it stopped (an epoch without its flag
is redone). ``--check N`` recomputes N stored records (of random complete
epochs) and prints the largest difference.

``--world-size`` is the number of processes of the training runs that will read
the outputs (recorded and checked there; default: the number of processes of
the dump). Launched with several processes (``tools/dist_dump.sh``), the
batches of an epoch are split among them; they write their records into the
same files and rank 0 sets the flags.
Train with ``--cfg-options model.teacher.outputs=DIR``; see
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
from mmengine import dist
from mmengine.config import DictAction
from mmengine.runner import Runner, set_random_seed
from torch.utils.data import DataLoader

import cls_kd
from cls_kd.apis import (
    close_process_group,
    config_arg,
    init_process_group,
    load_config,
)
from cls_kd.datasets import (
    batch_key,
    check_sampler,
    epoch_batches,
    find_seeded_dataset,
    mix_facts,
    mix_fingerprint,
    run_facts,
    seed_batch_augments,
)
from cls_kd.models.teachers import teacher_forward
from cls_kd.models.teachers.stored_outputs import (
    FORMAT,
    complete_epochs,
    decode_records,
    encode_records,
    epoch_file,
    read_manifest,
    record_dtype,
    write_manifest,
)
from cls_kd.registry import MODELS


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
        '--world-size', type=int,
        help='number of processes of the training runs that replay them '
        '(default: those of this dump)')
    parser.add_argument('--check', type=int, default=0, metavar='N',
                        help='recompute N records and print the largest '
                        'difference')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries')
    parser.add_argument('--launcher', choices=['none', 'pytorch'],
                        default='none', help='pytorch: one of the '
                        'processes of tools/dist_dump.sh')
    return parser.parse_args(argv)


def init_launcher(launcher: str):
    """``(rank, processes)``; starts the process group for ``pytorch``
    (:func:`cls_kd.apis.init_process_group`), refuses a launch of several
    processes without it (each would dump everything)."""
    if launcher != 'pytorch' and int(os.environ.get('WORLD_SIZE', '1')) > 1:
        _fail('launched with several processes but --launcher none: use '
              'bash tools/dist_dump.sh CONFIG GPUS --out DIR.')
    return init_process_group(launcher)


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
    cfg = load_config(args.config, args.cfg_options)
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
    try:  # SeededAugmentDataset refuses a transform it cannot replay
        loader = Runner.build_dataloader(loader_cfg, seed=seed)
        check_sampler(loader.sampler)
    except ValueError as e:
        _fail(f'train_dataloader: {e}')
    dataset = find_seeded_dataset(loader.dataset)
    if dataset is None:
        _fail("the training set is not wrapped in SeededAugmentDataset: set "
              "train_dataloader.dataset=dict(type='SeededAugmentDataset', "
              'dataset=<the dataset>).')
    # On the CPU, as the distiller that replays computes it.
    digest = model.teachers.digest(name)
    if name in model.teachers.train_mode:
        _fail(f'teacher {name!r} follows the train mode (train_mode=True: '
              f'dropout, drop-path, batch statistics) in training; stored '
              f'outputs of its eval mode would not be what online KD reads.')
    seed_batch_augments(model.data_preprocessor)
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    return cfg, model.to(device).eval(), name, loader, dataset, digest


def dump_batches(loader, manifest: dict, epoch: int) -> list:
    """The batches to run the teacher on in ``epoch``: those of the
    training processes (``cls_kd.datasets.epoch_batches``). Without batch
    augments a record does not depend on its batch, and every sample is
    dumped, also those ``drop_last`` leaves out (a run with another sampler
    order reads them); with them, exactly the training batches."""
    mixed = manifest.get('mix') is not None
    try:
        return epoch_batches(loader.sampler, int(loader.batch_size),
                             manifest['run']['world_size'], epoch,
                             drop_last=bool(loader.drop_last) and mixed)
    except ValueError as e:
        _fail(str(e))


def new_manifest(args, cfg, name, digest, loader, num_classes, mix) -> dict:
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
        run=facts, num_classes=num_classes, mix=mix,
        topk=min(args.topk, num_classes), dtype=args.dtype,
        versions=dict(cls_kd=cls_kd.__version__, torch=torch.__version__,
                      mmengine=mmengine.__version__,
                      mmpretrain=mmpretrain.__version__,
                      numpy=np.__version__),
        epochs={})


def check_same(old: dict, new: dict, out: str) -> None:
    """Refuse to add to a store written for another teacher or run."""
    for key in ('format', 'num_classes', 'topk', 'dtype', 'teacher', 'run',
                'mix'):
        ours = {k: v for k, v in new[key].items() if k != 'checkpoint'} \
            if key == 'teacher' else new[key]
        theirs = {k: v for k, v in old.get(key, {}).items()
                  if k != 'checkpoint'} if key == 'teacher' else old.get(key)
        if ours != theirs:
            _fail(f'{out} holds outputs with {key}={theirs!r}, this dump '
                  f'would write {ours!r}: choose another --out or delete it.')


def teacher_logits(model, name, batch, mixed: bool = False):
    """The teacher's logits of a collated batch and its data samples
    (mixed by the batch augments when ``mixed``)."""
    data = model.data_preprocessor(batch, training=mixed)
    teacher = model.teachers[name]
    with torch.no_grad():
        return teacher_forward(
            teacher, model.teachers.inputs_for(name, data['inputs'])), \
            data['data_samples']


def targets_of(samples) -> torch.Tensor:
    return torch.tensor([int(s.gt_label[0]) for s in samples])


def encode_batch(logits, samples, rec_dtype, mixed: bool):
    """``(replay indices, records)`` of one batch."""
    meta = [s.metainfo for s in samples]
    index = np.array([m['replay_index'] for m in meta])
    key = batch_key(meta[0]['replay_seed'], meta[0]['replay_epoch'],
                    index) if mixed else None
    mix = mix_fingerprint(samples) if mixed else None
    return index, encode_records(logits, targets_of(samples), rec_dtype,
                                 batch=key, mix=mix)


def batch_loader(loader, batches) -> DataLoader:
    """The config's dataset, collate function and workers over the given
    batches (lists of indices), in order."""
    return DataLoader(loader.dataset, batch_sampler=batches,
                      collate_fn=loader.collate_fn,
                      num_workers=loader.num_workers,
                      worker_init_fn=loader.worker_init_fn)


def dump_epoch(model, name, loader, dataset, manifest, out, epoch,
               rank: int = 0, processes: int = 1) -> None:
    """Write ``epoch``'s records; with several processes each runs every
    ``processes``-th batch, and rank 0 sets the complete flag."""
    mixed = manifest.get('mix') is not None
    rec_dtype = record_dtype(manifest['topk'], manifest['num_classes'],
                             manifest['dtype'], mixed=mixed)
    length = len(dataset)
    dataset.set_epoch(epoch)
    batches = dump_batches(loader, manifest, epoch)
    flat = [i for b in batches for i in b]
    if mixed and len(flat) != len(set(flat)):
        world = manifest['run']['world_size']
        _fail(f'epoch {epoch}: with batch augments every sample must be in '
              f'one batch, but the sampler repeats '
              f'{len(flat) - len(set(flat))} samples (DefaultSampler pads '
              f'{length} samples to a multiple of the world size {world}): '
              f'a mixed view cannot be stored twice per sample. Train on '
              f'{length // world * world} samples (e.g. '
              f'train_dataloader.dataset.dataset.indices='
              f'{length // world * world}) or with a world size that '
              f'divides {length}.')
    if rank == 0:
        np.memmap(epoch_file(out, epoch), dtype=rec_dtype, mode='w+',
                  shape=(length, )).flush()
    dist.barrier()
    records = np.memmap(epoch_file(out, epoch), dtype=rec_dtype, mode='r+',
                        shape=(length, ))
    seen = np.zeros(length, dtype=np.uint8)
    mine = batches[rank::processes]
    start, total = time.time(), len(mine)
    for i, batch in enumerate(batch_loader(loader, mine)):
        logits, samples = teacher_logits(model, name, batch, mixed)
        index, encoded = encode_batch(logits, samples, rec_dtype, mixed)
        records[index] = encoded
        seen[index] = 1
        if rank == 0 and ((i + 1) % 20 == 0 or i + 1 == total):
            elapsed = time.time() - start
            eta = elapsed / (i + 1) * (total - i - 1)
            print(f'epoch {epoch}: batch {i + 1}/{total}'
                  f'{f" (rank 0 of {processes})" if processes > 1 else ""}, '
                  f'{elapsed:.0f} s, ETA {eta:.0f} s', flush=True)
    records.flush()
    del records
    if processes > 1:
        counts = torch.from_numpy(seen.astype(np.int32))
        if torch.cuda.is_available():
            counts = counts.cuda()
        dist.all_reduce(counts)
        seen = counts.cpu().numpy()
    if rank == 0:
        needed = len(set(flat)) if mixed and loader.drop_last else length
        if int((seen > 0).sum()) < needed:
            _fail(f'epoch {epoch}: the sampler gave {int((seen > 0).sum())} '
                  f'of {length} samples; use a sampler that visits each '
                  f'once.')
        manifest['epochs'][str(epoch)] = dict(
            complete=True, seconds=round(time.time() - start, 1))
        write_manifest(out, manifest)
    dist.barrier()


def check_records(model, name, loader, dataset, manifest, out,
                  count) -> float:
    """Recompute at least ``count`` stored records (whole batches of random
    complete epochs, rebuilt as dumped); the largest absolute difference
    of the decoded logits at the stored classes. Mixed records must also
    have the same batch key and mixed-label fingerprint."""
    done = sorted(complete_epochs(manifest))
    if not done:
        _fail('--check: no complete epoch in ' + out)
    mixed = manifest.get('mix') is not None
    rec_dtype = record_dtype(manifest['topk'], manifest['num_classes'],
                             manifest['dtype'], mixed=mixed)
    rng, worst, checked = random.Random(0), 0.0, 0
    while checked < count:
        epoch = rng.choice(done)
        dataset.set_epoch(epoch)
        batches = dump_batches(loader, manifest, epoch)
        batch = next(iter(batch_loader(loader, [rng.choice(batches)])))
        logits, samples = teacher_logits(model, name, batch, mixed)
        index, fresh = encode_batch(logits, samples, rec_dtype, mixed)
        stored = np.memmap(epoch_file(out, epoch), dtype=rec_dtype, mode='r',
                           shape=(len(dataset), ))[index]
        if mixed and not (np.array_equal(stored['batch'], fresh['batch'])
                          and np.allclose(stored['mix'], fresh['mix'])):
            _fail(f'--check: epoch {epoch}: samples {index[:8].tolist()} '
                  f'were stored from another batch or mix.')
        decoded = decode_records(stored, manifest['num_classes'])
        known = torch.zeros_like(decoded, dtype=torch.bool).scatter_(
            1, torch.from_numpy(stored['classes'].astype(np.int64)), True)
        diff = (decoded - logits.float().cpu()).abs()[known]
        worst, checked = max(worst, float(diff.max())), checked + len(index)
    return worst


def main(argv=None):
    args = parse_args(argv)
    if args.topk < 1 or (args.world_size or 1) < 1 or args.check < 0:
        _fail(f'--topk and --world-size must be >= 1 and --check >= 0; got '
              f'{args.topk}, {args.world_size}, {args.check}.')
    rank, processes = init_launcher(args.launcher)
    if args.world_size is None:
        args.world_size = processes
    cfg, model, name, loader, dataset, digest = build(args)
    dataset.set_epoch(0)
    num_classes = teacher_logits(model, name, next(iter(batch_loader(
        loader, [[0]]))))[0].shape[1]
    mix = mix_facts(model.data_preprocessor, loader)
    sampler_seed = cfg.train_dataloader.get('sampler', {}).get('seed')
    if mix is not None and sampler_seed is None and (
            cfg.get('randomness') or {}).get('seed') is None:
        _fail('the config has batch augments (Mixup/CutMix) but no '
              'randomness.seed: the training run\'s sampler order, which '
              'fixes each sample\'s batch, would be random. Set '
              'randomness=dict(seed=...).')
    manifest = new_manifest(args, cfg, name, digest, loader, num_classes,
                            mix)
    if rank == 0:
        os.makedirs(args.out, exist_ok=True)
        if osp.exists(osp.join(args.out, 'manifest.json')):
            old = read_manifest(args.out)
            check_same(old, manifest, args.out)
            manifest['epochs'] = old.get('epochs', {})
        write_manifest(args.out, manifest)
    dist.barrier()
    manifest = read_manifest(args.out)
    epochs = epoch_range(args.epochs, cfg.train_cfg.max_epochs)
    todo = [e for e in epochs if e not in complete_epochs(manifest)]
    size = record_dtype(manifest['topk'], num_classes, manifest['dtype'],
                        mixed=mix is not None).itemsize * len(dataset)
    split = f', split over {processes} processes' if processes > 1 else ''
    if rank == 0:
        print(f'{len(dataset)} samples x {size // len(dataset)} B = '
              f'{size / 2**20:.2f} MiB per epoch; {len(todo)} of '
              f'{len(epochs)} epochs to dump ({size * len(todo) / 2**20:.2f} '
              f'MiB), top-{manifest["topk"]} of {num_classes} classes in '
              f'{manifest["dtype"]}, batches of {args.world_size} training '
              f'process(es){" with batch augments" if mix else ""}'
              f'{split}',
              flush=True)
    for epoch in epochs:
        if epoch in complete_epochs(manifest):
            if rank == 0:
                print(f'epoch {epoch}: complete, skipped', flush=True)
            continue
        dump_epoch(model, name, loader, dataset, manifest, args.out, epoch,
                   rank, processes)
    if args.check and rank == 0:
        diff = check_records(model, name, loader, dataset, manifest,
                             args.out, args.check)
        print(f'--check {args.check}: largest difference of a stored logit '
              f'{diff:.3g}', flush=True)
    close_process_group()
    return manifest


if __name__ == '__main__':
    main()
