"""Replaying stored teacher outputs: the same student weights as running
the teacher, and refusals of stores that do not fit."""
import copy
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.runner import Runner

import cls_kd
from cls_kd.apis import fit_schedulers_to_max_epochs
from cls_kd.models.distillers import DistillerConfigError
from cls_kd.models.teachers.stored_outputs import (
    decode_records,
    encode_records,
    record_dtype,
)
from cls_kd.registry import MODELS

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))
KD_DIGITS = 'configs/kd/kd_resnet18-c16_vit-t4-p8_1xb64_digits.py'

cls_kd.register_all_modules(init_default_scope=False)


def seeded_kd_config(digits_root, work_dir, images=32, batch_size=8,
                     epochs=2, config=KD_DIGITS) -> Config:
    """A short digits KD run on seeded views, random frozen teacher, no
    validation."""
    cfg = Config.fromfile(osp.join(ROOT, config))
    inner = cfg.train_dataloader.dataset.to_dict()
    # Every 45th image: all ten classes (the folder is sorted by class).
    inner.update(data_root=digits_root,
                 indices=list(range(0, 45 * images, 45)))
    cfg.train_dataloader.dataset = dict(type='SeededAugmentDataset', seed=0,
                                        dataset=inner)
    cfg.train_dataloader.update(batch_size=batch_size, num_workers=0,
                                persistent_workers=False)
    cfg.custom_hooks = [dict(type='SeededAugmentHook')]
    cfg.model.teacher.update(checkpoint=None, random_init=True)
    cfg.model.val_teacher = False
    cfg.train_cfg.update(max_epochs=epochs, val_interval=epochs + 1)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.test_cfg = cfg.test_dataloader = cfg.test_evaluator = None
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook',
                                        interval=epochs + 1)
    cfg.randomness = dict(seed=0)
    cfg.work_dir = str(work_dir)
    cfg.launcher = 'none'
    fit_schedulers_to_max_epochs(cfg)  # as tools/train.py does
    return cfg


def train(cfg: Config, **outputs) -> dict:
    """Train; the student's final weights."""
    from cls_kd.engine.hooks import add_schedule_hook
    from cls_kd.utils import resolve_teacher_paths
    cfg = copy.deepcopy(cfg)
    cfg.model.teacher.update(outputs)
    add_schedule_hook(cfg)
    runner = Runner.from_cfg(resolve_teacher_paths(cfg))
    runner.train()
    return {k: v.clone() for k, v in runner.model.state_dict().items()}


def dump(tool_loader, cfg: Config, out: str, *args) -> dict:
    path = osp.join(cfg.work_dir, 'dump_config.py')
    cfg.dump(path)
    tool = tool_loader('tools/dump_teacher_outputs.py')
    return tool.main([path, '--out', out, *args])


@pytest.fixture(scope='module')
def stored(digits_root, tool_loader, tmp_path_factory):
    """A float32 store of all 10 classes over 2 epochs, and its config."""
    work = tmp_path_factory.mktemp('replay')
    cfg = seeded_kd_config(digits_root, work)
    out = str(work / 'outputs')
    dump(tool_loader, cfg, out, '--dtype', 'float32', '--topk', '10')
    return cfg, out


def test_replayed_run_ends_with_the_online_weights(stored):
    cfg, out = stored
    online = train(cfg)
    replayed = train(cfg, outputs=out)
    assert online.keys() == replayed.keys()
    # Bit for bit: the stored float32 logits are the online ones (same
    # views, batches and kernels), and nothing else in the step changes.
    for key in online:
        assert torch.equal(online[key], replayed[key]), key


def _build(cfg, seed=0, **teacher):
    model = copy.deepcopy(cfg.model)
    model.teacher = dict(model.teacher, **teacher)
    model.data_preprocessor = cfg.data_preprocessor
    from cls_kd.utils import resolve_teacher_paths
    probe = Config(dict(model=model))
    resolve_teacher_paths(probe)
    torch.manual_seed(seed)  # seed 0: the random teacher of the dump
    return MODELS.build(probe.model)


def test_other_teacher_is_refused(stored):
    cfg, out = stored
    with pytest.raises(DistillerConfigError,
                       match=r'the teacher digest is .* in its manifest.json'):
        _build(cfg, seed=1, outputs=out)  # other random weights


def test_run_facts_that_differ_are_refused(stored):
    cfg, out = stored
    model = _build(cfg, outputs=out)
    facts = dict(seed=0, pipeline=model.stored['teacher'].manifest['run'][
        'pipeline'], length=32, batch_size=8, world_size=1)
    model.check_stored_outputs(facts, range(2))
    for key, value in (('seed', 1), ('batch_size', 16), ('world_size', 8),
                       ('pipeline', 'other'), ('length', 33)):
        with pytest.raises(DistillerConfigError,
                           match=rf'{key} is .* in its manifest.json but '
                           rf'{value!r} here'):
            model.check_stored_outputs(dict(facts, **{key: value}))
    with pytest.raises(DistillerConfigError,
                       match=r'lacks epochs \[2, 3\].*--epochs 2:4'):
        model.check_stored_outputs(facts, range(4))


def test_too_few_classes_per_record_are_refused(stored):
    cfg, out = stored
    with pytest.raises(DistillerConfigError,
                       match=r"topk is 10 in its manifest.json but '>= 11 "):
        _build(cfg, outputs=dict(dir=out, min_topk=11))


def test_missing_store_is_refused(stored, tmp_path):
    cfg, _ = stored
    with pytest.raises(DistillerConfigError,
                       match='no readable manifest.json.*--out'):
        _build(cfg, outputs=str(tmp_path))


def test_feature_loss_on_a_replayed_teacher_is_refused(stored):
    cfg, out = stored
    cfg = copy.deepcopy(cfg)
    cfg.model.taps = dict(
        t_feat=dict(model='teacher', path='backbone.layer4'),
        s_feat=dict(model='student', path='backbone.layers.3'))
    cfg.model.losses.loss_feat = dict(
        type='FeatureMSELoss', inputs=dict(preds='s_feat',
                                           targets='t_feat'))
    with pytest.raises(DistillerConfigError,
                       match=r"Loss 'loss_feat' \(FeatureMSELoss\) reads "
                       r"features \['t_feat'\] of teacher 'teacher'"):
        _build(cfg, outputs=out)


MIX = dict(augments=[dict(type='Mixup', alpha=0.8),
                     dict(type='CutMix', alpha=1.0)])


def mixed(cfg: Config) -> Config:
    """``cfg`` with Mixup and CutMix (one of them drawn per batch)."""
    cfg = copy.deepcopy(cfg)
    cfg.model.student.train_cfg = copy.deepcopy(MIX)
    return cfg


@pytest.fixture(scope='module')
def stored_mixed(digits_root, tool_loader, tmp_path_factory):
    """A float32 top-10 store of a Mixup/CutMix run, and its config."""
    work = tmp_path_factory.mktemp('replay_mixed')
    cfg = mixed(seeded_kd_config(digits_root, work))
    out = str(work / 'outputs')
    dump(tool_loader, cfg, out, '--dtype', 'float32', '--topk', '10')
    return cfg, out


def test_mixed_replay_ends_with_the_online_weights(stored_mixed):
    """Mixup/CutMix draw from each batch's key: the dump's teacher saw the
    mixed images the student sees, so replaying them is exact too."""
    cfg, out = stored_mixed
    records = np.fromfile(osp.join(out, 'epoch_0000.bin'),
                          record_dtype(10, 10, 'float32', mixed=True))
    # The labels were mixed (a one-hot label's fingerprint is target + 1).
    assert not np.allclose(records['mix'], records['target'] + 1)
    assert len(np.unique(records['batch'])) == 4  # 32 images, batches of 8
    online = train(cfg)
    replayed = train(cfg, outputs=out)
    assert online.keys() == replayed.keys()
    for key in online:
        assert torch.equal(online[key], replayed[key]), key


def test_replayed_run_never_runs_the_teacher(stored, monkeypatch):
    """The replayed run's weights equal the online run's because the stored
    logits are the teacher's, not because the teacher ran anyway."""
    from cls_kd.models.teachers import running
    calls = []
    forward = running.teacher_forward

    def counted(teacher, x):
        calls.append(len(x))
        return forward(teacher, x)

    monkeypatch.setattr(running, 'teacher_forward', counted)
    cfg, out = stored
    train(cfg, outputs=out)
    assert calls == []  # not in the dry run either: zeros stand in there
    train(cfg)
    assert len(calls) > 8  # online: the dry run and every step


def test_train_mode_teacher_is_refused(stored):
    cfg, out = stored
    cfg = copy.deepcopy(cfg)
    cfg.model.teacher.train_mode = True
    with pytest.raises(DistillerConfigError, match=r"Teacher 'teacher' has "
                       r'train_mode=True .* the dump runs it in eval mode'):
        _build(cfg, outputs=out)


def test_batch_mixed_otherwise_is_refused(stored_mixed):
    """The same batch (members, order) with other mixed labels: refused by
    the fingerprint check."""
    from mmpretrain.structures import DataSample
    cfg, out = stored_mixed
    model = _build(cfg, outputs=out)
    store = model.stored['teacher']
    store.checked = True
    records = np.fromfile(osp.join(out, 'epoch_0000.bin'), store.rec_dtype)
    # The first batch of epoch 0 in its order (the run's sampler, seed 0).
    from mmengine.dataset import DefaultSampler

    from cls_kd.datasets import batch_key, epoch_batches
    batches = epoch_batches(DefaultSampler(list(range(32)), seed=0), 8, 1, 0)
    first = np.array(batches[0])
    assert (records['batch'][first] == batch_key(0, 0, first)).all()
    samples = []
    for i in first:
        sample = DataSample(metainfo=dict(
            replay_index=int(i), replay_epoch=0, replay_seed=0))
        sample.set_gt_label(int(records['target'][i]))
        sample.set_gt_score(F.one_hot(torch.tensor(int(
            records['target'][i])), 10).float())  # not mixed
        samples.append(sample)
    # The dumped batch was mixed (a one-hot fingerprint is class + 1).
    assert not np.allclose(records['mix'][first],
                           records['target'][first] + 1)
    with pytest.raises(RuntimeError, match='was mixed otherwise than when '
                       r'dumped \(mixed label fingerprints differ'):
        store.read(samples, torch.device('cpu'), 0)


def test_unmixed_store_is_refused_for_a_mixed_run(stored):
    cfg, out = stored
    with pytest.raises(DistillerConfigError,
                       match=r'was dumped without batch augments '
                       r'\(Mixup/CutMix\), but this run has them'):
        train(mixed(cfg), outputs=out)


def test_mixed_store_refuses_another_sampler_seed(stored_mixed):
    cfg, out = stored_mixed
    cfg = copy.deepcopy(cfg)
    cfg.train_dataloader.sampler.seed = 1  # the teacher's seed stays 0
    with pytest.raises(DistillerConfigError,
                       match=r'mix.sampler_seed .* is 0 in its manifest.json '
                       r'but 1 here'):
        train(cfg, outputs=out)


def test_mixed_batch_of_other_members_is_refused(stored_mixed):
    """A batch whose samples were dumped in other batches (another order)
    is refused at the step."""
    from mmpretrain.structures import DataSample
    cfg, out = stored_mixed
    model = _build(cfg, outputs=out)
    store = model.stored['teacher']
    store.checked = True
    records = np.fromfile(osp.join(out, 'epoch_0000.bin'), store.rec_dtype)
    first = np.flatnonzero(records['batch'] == records['batch'][0])
    samples = [
        DataSample(metainfo=dict(replay_index=int(i), replay_epoch=0,
                                 replay_seed=0)).set_gt_label(
                                     int(records['target'][i]))
        for i in first[::-1]  # the dumped batch, reversed
    ]
    with pytest.raises(RuntimeError, match='were dumped in other batches'):
        store.read(samples, torch.device('cpu'), 0)


def test_top_k_reconstruction_keeps_the_stored_probabilities():
    torch.manual_seed(0)
    logits = torch.randn(4, 10) * 3
    targets = torch.tensor([0, 9, 3, 5])
    records = encode_records(logits, targets, record_dtype(3, 10, 'float32'))
    rebuilt = decode_records(records, 10)
    p, q = logits.softmax(1), rebuilt.softmax(1)
    for row in range(4):
        stored = set(logits[row].topk(3).indices.tolist()) | {
            int(targets[row])}
        others = [c for c in range(10) if c not in stored]
        for c in stored:  # exact probability of every stored class
            assert q[row, c].item() == pytest.approx(p[row, c].item(),
                                                     rel=1e-5)
        # The rest mass, spread evenly over the other classes.
        assert q[row, others].sum().item() == pytest.approx(
            p[row, others].sum().item(), rel=1e-4)
        assert torch.allclose(q[row, others], q[row, others[0]])
    # k = K in float32: the logits themselves.
    exact = decode_records(
        encode_records(logits, targets, record_dtype(10, 10, 'float32')), 10)
    assert torch.equal(exact, logits)
    # At T = 4 the flat tail gets at least the true softened tail mass
    # (power-mean inequality), here strictly more.
    tail = [c for c in range(10) if c not in set(
        logits[0].topk(3).indices.tolist()) | {0}]
    assert F.softmax(rebuilt[0] / 4, 0)[tail].sum() > F.softmax(
        logits[0] / 4, 0)[tail].sum()
    assert np.all(records['classes'][:, 0] == logits.argmax(1).numpy())
