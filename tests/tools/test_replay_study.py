"""tools/analysis/replay_study.py's measurements on a tiny store: 16
digits views, a random frozen teacher, one epoch."""
import copy

import numpy as np
import pytest
import torch
from mmengine.config import Config

from cls_kd.models.teachers.stored_outputs import decode_records


@pytest.fixture(scope='module')
def study(digits_root, tool_loader, tmp_path_factory):
    """The tool, the seeded tiny config and its stores (float32 and float16
    top-10, float32 top-1)."""
    tool = tool_loader('tools/analysis/replay_study.py')
    dump = tool_loader('tools/dump_teacher_outputs.py')
    work = tmp_path_factory.mktemp('replay_study')
    cfg = Config.fromfile(tool.write_seeded_config(str(work)))
    cfg.train_dataloader.dataset.dataset.update(data_root=digits_root,
                                                indices=16)
    cfg.train_dataloader.update(batch_size=8, num_workers=0,
                                persistent_workers=False)
    cfg.model.teacher.update(checkpoint=None, random_init=True)
    cfg.train_cfg.max_epochs = 1
    cfg.randomness = dict(seed=0)  # the dump seeds the random teacher
    path = str(work / 'tiny.py')
    cfg.dump(path)
    dirs = {}
    for store in tool.stores_for([1], 10):
        dirs[store.key] = str(work / store.key)
        dump.main([path, '--out', dirs[store.key], '--topk',
                   str(store.topk), '--dtype', store.dtype])
    return tool, Config.fromfile(path), dirs


def test_loss_effect_is_zero_for_the_exact_store_only(study):
    tool, cfg, dirs = study
    assert list(dirs) == ['float32_top10', 'float16_top10', 'float32_top1']
    effect = tool.measure_loss_effect(
        cfg, dirs, 'float32_top10', {'init': tool.build_student(cfg)})
    exact, half, top1 = (effect['init'][k] for k in dirs)
    for key in ('abs_max', 'rel_max', 'kl_max', 'p_stored_err'):
        assert exact[key] == 0.0, key
    assert exact['loss_rebuilt'] == exact['loss_exact']
    # float16: rounding of the stored logits only.
    assert half['abs_max'] < 1e-3 and half['kl_max'] < 1e-6
    # top-1: the flat tail changes the loss and the softened teacher...
    assert top1['abs_max'] > 1e-4 and top1['kl_mean'] > 1e-6
    assert top1['loss_rebuilt'] != top1['loss_exact']
    # ... but at T = 1 the stored classes keep their probabilities.
    assert top1['p_stored_err'] < 1e-6


def test_loss_is_the_configs_kd_loss(study):
    """0.5 · T² · KL(softmax(z_t / 4) ‖ softmax(z_s / 4)), computed here
    in NumPy from the stored logits and the student's."""
    tool, cfg, dirs = study
    student = tool.build_student(cfg)
    z_s, targets = tool.view_logits(cfg, student)
    records, _ = tool.read_epoch(dirs['float32_top10'])
    assert np.array_equal(targets, records['target'])
    z_t = records['logits'].astype(np.float64)
    order = records['classes'].astype(np.int64)
    teacher = np.empty_like(z_t)
    np.put_along_axis(teacher, order, z_t, axis=1)  # undo the top-k sort

    def log_softmax(z):
        z = z / 4.0
        z = z - z.max(1, keepdims=True)
        return z - np.log(np.exp(z).sum(1, keepdims=True))

    log_p, log_q = log_softmax(teacher), log_softmax(z_s.double().numpy())
    expected = 0.5 * 16 * (np.exp(log_p) * (log_p - log_q)).sum(1).mean()
    effect = tool.measure_loss_effect(cfg, dirs, 'float32_top10',
                                      {'init': student})
    assert effect['init']['float32_top10']['loss_exact'] == pytest.approx(
        expected, rel=1e-5)


def test_top1_reconstruction_kl_matches_a_hand_computed_one(study):
    tool, cfg, dirs = study
    exact_records, _ = tool.read_epoch(dirs['float32_top10'])
    records, _ = tool.read_epoch(dirs['float32_top1'])
    exact = decode_records(exact_records, 10).double()
    p = torch.softmax(exact, 1)
    # Rebuilt by hand at T = 1: stored classes exact, the rest flat.
    known = torch.zeros(len(p), 10, dtype=torch.bool)
    known[torch.arange(len(p)), torch.from_numpy(
        records['classes'][:, 0].astype(np.int64))] = True
    known[torch.arange(len(p)), torch.from_numpy(
        records['target'].astype(np.int64))] = True
    rest = (p * ~known).sum(1, keepdim=True) / (~known).sum(1, keepdim=True)
    q = torch.where(known, p, rest)
    kl = (p * (p.log() - q.log())).sum(1)
    effect = tool.loss_effect(torch.zeros(len(p), 10), exact.float(),
                              records, lambda s, t: t.sum(), 1.0)
    assert effect['kl_mean'] == pytest.approx(float(kl.mean()), rel=1e-3)
    assert effect['kl_max'] == pytest.approx(float(kl.max()), rel=1e-3)


def test_mismatched_stores_are_refused(study):
    tool, _, dirs = study
    _, exact = tool.read_epoch(dirs['float32_top10'])
    _, top1 = tool.read_epoch(dirs['float32_top1'])
    tool.check_comparable(exact, top1, 'top1')
    with pytest.raises(ValueError, match=r"dtype='float32', topk=1; it must "
                       r'be float32 with topk = num_classes = 10'):
        tool.check_comparable(top1, exact, 'exact')
    other = copy.deepcopy(top1)
    other['run']['seed'] = 1
    with pytest.raises(ValueError, match=r'other: run is .*seed.: 1.*the '
                       r'exact store has'):
        tool.check_comparable(exact, other, 'other')
    with pytest.raises(ValueError, match=r'epoch 1 is not complete .*'
                       r'--epochs 1:2'):
        tool.read_epoch(dirs['float32_top1'], epoch=1)


def test_topk_must_be_below_the_number_of_classes(tool_loader):
    tool = tool_loader('tools/analysis/replay_study.py')
    assert [s.key for s in tool.stores_for([5, 1, 5], 10)] == [
        'float32_top10', 'float16_top10', 'float32_top5', 'float32_top1']
    for k in (0, 10):
        with pytest.raises(ValueError, match=rf'--topk {k}: must be in '
                           r'\[1, 9\]'):
            tool.stores_for([k], 10)


def test_summaries(tool_loader, tmp_path):
    tool = tool_loader('tools/analysis/replay_study.py')
    assert tool.mean_std([97.0, 98.0, 99.0]) == '98.00 ± 1.00'
    table = tool.accuracy_table({'online': [97.0, 99.0],
                                 'float32_top1': [96.5, 96.5]}, [0, 1])
    assert '| online (teacher run) | 98.00 ± 1.41 | 97.00, 99.00 |' in table
    assert '| replayed, float32_top1 | 96.50 ± 0.00 |' in table
    a, b = str(tmp_path / 'a.pth'), str(tmp_path / 'b.pth')
    torch.save(dict(state_dict={'w': torch.zeros(3), 'b': torch.ones(2)}), a)
    torch.save(dict(state_dict={'w': torch.tensor([0., -0.5, 0.25]),
                                'b': torch.ones(2)}), b)
    assert tool.max_weight_difference(a, b) == 0.5
