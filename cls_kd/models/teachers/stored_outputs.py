"""Teacher outputs stored once per (epoch, sample) and replayed in training.

``tools/dump_teacher_outputs.py`` writes them; a teacher spec with
``outputs=DIR`` makes the distiller read them instead of running the
teacher (logit losses only). See ``docs/stored_teacher_outputs.md``.

Layout of DIR: ``manifest.json`` and one file per epoch,
``epoch_0000.bin``, a NumPy memory map of one fixed-size record per sample
of the (seeded) training set, in dataset order (:func:`record_dtype`).
"""
import copy
import hashlib
import json
import os
import os.path as osp
from typing import Dict, Iterable, Optional

import numpy as np
import torch
import torch.nn as nn

from cls_kd.datasets.replay_batches import batch_key, mix_fingerprint
from cls_kd.errors import DistillerConfigError

from .part import TeacherAccess

__all__ = [
    'FORMAT', 'record_dtype', 'encode_records', 'decode_records',
    'teacher_digest', 'read_manifest', 'write_manifest', 'epoch_file',
    'complete_epochs', 'StoredOutputs', 'stored_teacher_outputs'
]

FORMAT = 1
#: Run facts a store must agree with (see ``cls_kd.datasets.run_facts``).
RUN_KEYS = ('seed', 'pipeline', 'length', 'batch_size', 'world_size')


def record_dtype(topk: int, num_classes: int, dtype: str = 'float16',
                 mixed: bool = False) -> np.dtype:
    """One sample's record: the teacher's ``topk`` largest logits (in
    ``dtype``, descending, so ``classes[0]`` is the arg-max) and their
    classes, the logit of the target class and the log-sum-exp of all
    logits (float32), and the target class (int32). ``mixed`` (batch
    augments): also the key of the sample's batch (uint32,
    ``cls_kd.datasets.batch_key``) and the fingerprint of its mixed label
    (float32, ``cls_kd.datasets.mix_fingerprint``)."""
    index = '<i2' if num_classes <= np.iinfo(np.int16).max else '<i4'
    fields = [('logits', np.dtype(dtype).newbyteorder('<'), (topk, )),
              ('classes', index, (topk, )),
              ('target_logit', '<f4'), ('lse', '<f4'), ('target', '<i4')]
    if mixed:
        fields += [('batch', '<u4'), ('mix', '<f4')]
    return np.dtype(fields)


def encode_records(logits: torch.Tensor, targets: torch.Tensor,
                   rec_dtype: np.dtype, batch: Optional[int] = None,
                   mix: Optional[np.ndarray] = None) -> np.ndarray:
    """Records of a batch: ``logits`` (B, K), ``targets`` (B, ) int; for a
    mixed record type, the batch key and the mixed labels' fingerprints."""
    z = logits.detach().float().cpu()  # B, K
    targets = targets.detach().cpu().long()
    topk = rec_dtype['logits'].shape[0]
    values, classes = z.topk(topk, dim=1)  # B, k; sorted, descending
    records = np.empty(len(z), dtype=rec_dtype)
    records['logits'] = values.numpy()
    records['classes'] = classes.numpy()
    records['target_logit'] = z.gather(1, targets[:, None])[:, 0].numpy()
    records['lse'] = z.logsumexp(dim=1).numpy()
    records['target'] = targets.numpy()
    if 'batch' in rec_dtype.names:
        records['batch'] = batch
        records['mix'] = mix
    return records


def decode_records(records: np.ndarray, num_classes: int) -> torch.Tensor:
    """Teacher logits (B, K), float32, rebuilt from records.

    Stored classes (the top-k and the target) get their stored logits;
    every other class gets ``lse + log(r / n)``, with ``r`` the probability
    mass (at T = 1) the stored classes leave and ``n`` the number of other
    classes: at T = 1 the softmax gives each stored class its exact
    probability and spreads the rest evenly. With k = K the stored logits
    are returned as they were stored.
    """
    def field(name, dtype):  # a contiguous copy (fields are strided)
        return torch.from_numpy(records[name].astype(dtype))

    values, classes = field('logits', np.float32), field('classes', np.int64)
    rows, target = torch.arange(len(records)), field('target', np.int64)
    logits = torch.zeros(len(records), num_classes).scatter_(1, classes,
                                                             values)  # B, K
    logits[rows, target] = field('target_logit', np.float32)
    known = torch.zeros_like(logits, dtype=torch.bool).scatter_(
        1, classes, True)
    known[rows, target] = True
    if bool(known.all()):
        return logits
    lse = field('lse', np.float32)[:, None]  # B, 1
    mass = torch.where(known, (logits - lse).exp(), 0.0).sum(1, True)
    rest = (1.0 - mass).clamp_min(1e-12)
    others = (~known).sum(1, keepdim=True).clamp_min(1)
    return torch.where(known, logits, lse + (rest / others).log())


def teacher_digest(teacher: nn.Module, to_teacher_input) -> str:
    """A digest of a teacher's architecture (``repr``), weights and input
    re-normalisation (``to_teacher_input`` applied to a fixed probe)."""
    h = hashlib.sha256(repr(teacher).encode())
    for name, value in teacher.state_dict().items():
        value = value.detach().cpu().contiguous().reshape(-1)
        h.update(f'{name}:{value.dtype}:{value.numel()}'.encode())
        h.update(value.view(torch.uint8).numpy().tobytes())
    probe = torch.linspace(-2, 2, 12).view(1, 3, 2, 2)
    h.update(to_teacher_input(probe).double().numpy().tobytes())
    return h.hexdigest()[:32]


def epoch_file(directory: str, epoch: int) -> str:
    return osp.join(directory, f'epoch_{int(epoch):04d}.bin')


def read_manifest(directory: str) -> dict:
    with open(osp.join(directory, 'manifest.json')) as f:
        return json.load(f)


def write_manifest(directory: str, manifest: dict) -> None:
    """Write ``manifest.json`` atomically (a kill leaves the old one)."""
    path = osp.join(directory, 'manifest.json')
    with open(path + '.tmp', 'w') as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + '.tmp', path)


def complete_epochs(manifest: dict) -> set:
    return {int(e) for e, v in manifest.get('epochs', {}).items()
            if v.get('complete')}


class StoredOutputs:
    """Reads one teacher's stored outputs for a training batch.

    Args:
        directory (str): What ``tools/dump_teacher_outputs.py --out`` wrote.
        teacher (str): The teacher's name, for messages.
        min_topk (int): Refuse a store of fewer classes per record.
            Defaults to 1.
    """

    def __init__(self, directory: str, teacher: str, min_topk: int = 1):
        self.directory, self.teacher = directory, teacher
        self.option = ('model.teacher.outputs' if teacher == 'teacher' else
                       f'model.teachers.{teacher}.outputs')
        try:
            self.manifest = read_manifest(directory)
        except (OSError, ValueError) as e:
            raise DistillerConfigError(
                f'{self.option}={directory!r}: no readable manifest.json '
                f'({e}); write it with tools/dump_teacher_outputs.py CONFIG '
                f'--out {directory}.') from None
        m = self.manifest
        if m.get('format') != FORMAT:
            self._refuse('format', m.get('format'), FORMAT)
        self.num_classes, self.topk = int(m['num_classes']), int(m['topk'])
        if self.topk < min_topk:
            self._refuse('topk', self.topk, f'>= {min_topk} (min_topk)')
        self.mix = m.get('mix')  # batch augments' facts, or None
        self.rec_dtype = record_dtype(self.topk, self.num_classes, m['dtype'],
                                      mixed=self.mix is not None)
        self._maps: Dict[int, np.memmap] = {}
        self.checked = False  # check_run called (by SeededAugmentHook)

    def _refuse(self, key, stored, expected) -> None:
        raise DistillerConfigError(
            f'{self.option}={self.directory!r} does not fit this run: '
            f'{key} is {stored!r} in its manifest.json but {expected!r} here. '
            f'Dump the outputs again for this config '
            f'(tools/dump_teacher_outputs.py).')

    def check_teacher(self, digest: str) -> None:
        """Refuse outputs of another teacher (architecture, weights or
        input normalisation)."""
        if self.manifest['teacher']['digest'] != digest:
            self._refuse('the teacher digest',
                         self.manifest['teacher']['digest'], digest)

    def check_run(self, facts: dict, epochs: Iterable[int] = ()) -> None:
        """Refuse outputs dumped for other views or batches (``facts``, see
        ``cls_kd.datasets.run_facts``) or lacking one of ``epochs``."""
        for key in RUN_KEYS:
            if self.manifest['run'][key] != facts[key]:
                self._refuse(key, self.manifest['run'][key], facts[key])
        mix = facts.get('mix')
        if (self.mix is None) != (mix is None):
            have = 'has' if mix is not None else 'has no'
            were = 'without' if self.mix is None else 'with'
            raise DistillerConfigError(
                f'{self.option}={self.directory!r} was dumped {were} batch '
                f'augments (Mixup/CutMix), but this run {have} them '
                f'(train_cfg.augments of the student): the stored outputs '
                f'belong to other images. Dump them again with this config.')
        for key in sorted(mix or {}):
            if self.mix.get(key) != mix[key]:
                self._refuse(f'mix.{key} (batch augments and the sampler, '
                             f'which fix each sample\'s batch)',
                             self.mix.get(key), mix[key])
        missing = sorted(set(epochs) - complete_epochs(self.manifest))
        if missing:
            raise DistillerConfigError(
                f'{self.option}={self.directory!r} lacks epochs {missing} '
                f'(0-based) of this run; complete ones: '
                f'{sorted(complete_epochs(self.manifest))}. Dump them with '
                f'tools/dump_teacher_outputs.py CONFIG --out '
                f'{self.directory} --epochs {missing[0]}:{missing[-1] + 1}.')
        self.checked = True

    def records(self, epoch: int, indices) -> np.ndarray:
        if epoch not in self._maps:
            if epoch not in complete_epochs(self.manifest):
                raise RuntimeError(
                    f'{self.option}: epoch {epoch} was not dumped (complete: '
                    f'{sorted(complete_epochs(self.manifest))}).')
            self._maps[epoch] = np.memmap(
                epoch_file(self.directory, epoch), dtype=self.rec_dtype,
                mode='r', shape=(int(self.manifest['run']['length']), ))
        return self._maps[epoch][np.asarray(indices)]

    def logits(self, inputs: torch.Tensor, data_samples,
               epoch: Optional[int] = None,
               dry: bool = False) -> torch.Tensor:
        """The stored logits of a training batch (:meth:`read`), on the
        inputs' device; zeros in the build-time dry run (``dry``), whose
        samples are no seeded views."""
        if dry:
            return inputs.new_zeros(len(inputs), self.num_classes)
        return self.read(data_samples, inputs.device, epoch)

    def read(self, data_samples, device: torch.device,
             epoch: Optional[int] = None) -> torch.Tensor:
        """The teacher's logits (B, K) for a batch of seeded views.

        Args:
            data_samples (list[DataSample]): Samples with ``replay_index``
                and ``replay_epoch`` (from ``SeededAugmentDataset``).
            device (torch.device): Where the logits go.
            epoch (int, optional): The epoch training is in; the views must
                be that epoch's.
        """
        if not self.checked:
            raise RuntimeError(
                f'{self.option}: the run was not checked against the stored '
                f"outputs: add custom_hooks=[dict(type='SeededAugmentHook')].")
        meta = [s.metainfo for s in data_samples]
        if any('replay_index' not in m for m in meta):
            raise RuntimeError(
                f'{self.option}: the batch has no replay keys: wrap the '
                f"training set in dict(type='SeededAugmentDataset', ...).")
        epochs = {m['replay_epoch'] for m in meta}
        if len(epochs) != 1 or (epoch is not None and epochs != {epoch}):
            raise RuntimeError(
                f'{self.option}: the batch holds views of epochs '
                f'{sorted(epochs)} while training is in epoch {epoch}: add '
                f"custom_hooks=[dict(type='SeededAugmentHook')].")
        epoch = epochs.pop()
        indices = [m['replay_index'] for m in meta]
        records = self.records(epoch, indices)
        if 'gt_label' in data_samples[0]:
            labels = torch.stack([s.gt_label[0] for s in data_samples
                                  ]).cpu().numpy()  # one transfer
            if not np.array_equal(labels, records['target']):
                raise RuntimeError(
                    f'{self.option}: stored targets {records["target"]} '
                    f'differ from the batch labels {labels}: the outputs '
                    f'belong to another dataset.')
        if self.mix is not None:
            self._check_mix(records, data_samples, epoch, indices,
                            meta[0]['replay_seed'])
        return decode_records(records, self.num_classes).to(device)

    def _check_mix(self, records, data_samples, epoch, indices, seed):
        """Refuse a batch that is not the one the outputs were stored for
        (other members or order) or was mixed otherwise."""
        key = batch_key(seed, epoch, indices)
        if not (records['batch'] == key).all():
            raise RuntimeError(
                f'{self.option}: samples {indices[:8]}... of epoch {epoch} '
                f'were dumped in other batches: with batch augments the '
                f'sampler order, batch size and world size must be the '
                f'dump\'s (recorded in {self.directory}/manifest.json).')
        mix = mix_fingerprint(data_samples)
        worst = float(np.abs(mix - records['mix']).max())
        if worst > 1e-4 * max(1.0, float(np.abs(mix).max())):
            raise RuntimeError(
                f'{self.option}: the batch of samples {indices[:8]}... of '
                f'epoch {epoch} was mixed otherwise than when dumped (mixed '
                f'label fingerprints differ by {worst:.3g}): the batch '
                f'augments must draw from the batch key '
                f"(custom_hooks=[dict(type='SeededAugmentHook')]).")

    def __deepcopy__(self, memo):
        return self  # shared by copies of the distiller (EMA)


def stored_teacher_outputs(specs: Dict[str, dict], teachers, captures,
                           terms, connectors) -> Dict[str, StoredOutputs]:
    """``teacher -> StoredOutputs`` for the teacher specs with ``outputs``
    (a directory, or ``dict(dir=..., min_topk=...)``), checked against the
    built teachers; a tap or teacher-running connector on such a teacher
    is refused, naming it (and the loss that reads a tap)."""
    stored = {}
    for name, spec in specs.items():
        outputs = copy.deepcopy(spec.get('outputs'))
        if outputs is None:
            continue
        if isinstance(outputs, str):
            outputs = dict(dir=outputs)
        store = StoredOutputs(outputs.pop('dir'), name, **outputs)
        if name in teachers.train_mode:
            raise DistillerConfigError(
                f'Teacher {name!r} has train_mode=True (dropout, drop-path, '
                f'batch statistics in training) and {store.option}: the dump '
                f'runs it in eval mode, so the stored outputs are not what '
                f'online KD reads. Drop one of them.')
        taps = sorted(t for t, owner in captures.owner.items()
                      if owner == name)
        for term in terms:
            read = sorted(term.sources() & set(taps))
            if read:
                raise DistillerConfigError(
                    f'Loss {term.name!r} ({type(term.module).__name__}) reads '
                    f'features {read} of teacher {name!r}, whose outputs are '
                    f'replayed from {store.directory!r}: stored outputs hold '
                    f'its logits only. Drop {store.option} to run the '
                    f'teacher.')
        if taps:
            raise DistillerConfigError(
                f'Taps {taps} are on teacher {name!r}, whose outputs are '
                f'replayed ({store.option}): it is not run in training.')
        for key, connector in connectors.items():
            if isinstance(connector, TeacherAccess) and \
                    connector.teacher_name == name:
                raise DistillerConfigError(
                    f'Connector {key!r} runs part of teacher {name!r}, whose '
                    f'outputs are replayed ({store.option}): not possible '
                    f'from stored logits.')
        store.check_teacher(teachers.digest(name))
        stored[name] = store
    return stored
