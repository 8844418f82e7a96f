import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.evaluator import Evaluator
from torch.utils.data import DataLoader, Dataset

import cls_kd
from cls_kd.evaluation import KNNAccuracy, KNNTestLoop, KNNValLoop, knn_predict
from cls_kd.models.distillers import DistillerConfigError
from cls_kd.registry import LOOPS, METRICS

cls_kd.register_all_modules()


def brute_force(queries, bank, labels, num_classes, k, temperature):
    """DINO's weighted k-NN written out with NumPy loops."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    b = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    out = np.zeros((len(q), num_classes))
    for i, row in enumerate(q):
        sims = [float(row @ x) for x in b]
        order = sorted(range(len(b)), key=lambda j: -sims[j])[:k]
        for j in order:
            out[i, labels[j]] += np.exp(sims[j] / temperature)
    return out


def fixed(seed=0, n_bank=60, n_query=25, dim=8, num_classes=5):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(num_classes, dim)) * 2
    labels = rng.integers(0, num_classes, n_bank)
    bank = centers[labels] + rng.normal(size=(n_bank, dim))
    q_labels = rng.integers(0, num_classes, n_query)
    queries = centers[q_labels] + rng.normal(size=(n_query, dim)) * 1.5
    return bank, labels, queries, q_labels


@pytest.mark.parametrize('k, temperature', [(20, 0.07), (5, 0.5), (1, 1.0)])
def test_knn_predict_equals_brute_force(k, temperature):
    bank, labels, queries, _ = fixed()
    expected = brute_force(queries, bank, labels, 5, k, temperature)
    scores = knn_predict(torch.tensor(queries), torch.tensor(bank),
                         torch.tensor(labels), 5, k, temperature, chunk=7)
    np.testing.assert_allclose(scores.numpy(), expected, rtol=1e-4)


def test_metric_accuracy_against_brute_force():
    bank, labels, queries, q_labels = fixed(seed=1)
    metric = METRICS.build(dict(type='KNNAccuracy', k=10, topk=(1, 2)))
    metric.set_bank(torch.tensor(bank), torch.tensor(labels))
    metric.process(None, [
        dict(feat=torch.tensor(f), gt_label=int(y))
        for f, y in zip(queries, q_labels)
    ])
    result = metric.compute_metrics(metric.results)
    scores = brute_force(queries, bank, labels, 5, 10, 0.07)
    top1 = (scores.argmax(1) == q_labels).mean() * 100
    top2 = np.mean([y in np.argsort(-s)[:2]
                    for s, y in zip(scores, q_labels)]) * 100
    assert result['top1'] == pytest.approx(top1)
    assert result['top2'] == pytest.approx(top2)
    assert 0 < top1 < 100  # a case where mistakes are possible


def test_metric_without_bank_says_how():
    metric = KNNAccuracy()
    with pytest.raises(RuntimeError, match="type='KNNValLoop'"):
        metric.compute_metrics([(torch.zeros(3), 0)])


@pytest.mark.parametrize('kwargs, message', [
    (dict(k=0), 'KNNAccuracy.k must be an integer >= 1, got 0.'),
    (dict(k=2.5), 'KNNAccuracy.k must be an integer >= 1, got 2.5.'),
    (dict(temperature=0),
     'KNNAccuracy.temperature must be a finite number > 0, got 0.'),
    (dict(temperature=float('nan')),
     'KNNAccuracy.temperature must be a finite number > 0, got nan.'),
    (dict(topk=(1, 0)), 'KNNAccuracy.topk[1] must be an integer >= 1, '
     'got 0.'),
    (dict(topk=()), 'KNNAccuracy.topk must name at least one k'),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(DistillerConfigError, match=re.escape(message)):
        KNNAccuracy(**kwargs)


def test_knn_predict_refuses_more_neighbours_than_bank():
    bank = torch.randn(4, 3)
    with pytest.raises(ValueError, match='k=5 neighbours asked of a feature '
                       'bank of 4'):
        knn_predict(torch.randn(2, 3), bank, torch.zeros(4).long(), 2, k=5)


def test_metric_refuses_small_bank_and_large_topk():
    metric = KNNAccuracy(k=5, topk=(1, ))
    metric.set_bank(torch.randn(4, 3), torch.tensor([0, 1, 0, 1]))
    with pytest.raises(DistillerConfigError, match=re.escape(
            'KNNAccuracy.k=5 neighbours, but the feature bank has 4 '
            'images; set k <= 4')):
        metric.compute_metrics([(torch.randn(3), 0)])
    metric = KNNAccuracy(k=2, topk=(1, 5))
    metric.set_bank(torch.randn(4, 3), torch.tensor([0, 1, 2, 1]))
    with pytest.raises(DistillerConfigError, match=re.escape(
            'KNNAccuracy.topk=(1, 5) asks for the top 5 of 3 classes; '
            'keep each value <= 3.')):
        metric.compute_metrics([(torch.randn(3), 0)])


class NeverRead(Dataset):
    """A labelled bank of ``size`` images of three classes whose images
    must not be read (the checks come before any feature extraction)."""

    metainfo = dict(classes=('a', 'b', 'c'))

    def __init__(self, size):
        self.size = size

    def __len__(self):
        return self.size

    def __getitem__(self, index):
        raise AssertionError('the bank was read before the checks')


def build_loop(loop, bank_size, **metric):
    runner = SimpleNamespace(visualizer=SimpleNamespace(), seed=0)
    loader = DataLoader(NeverRead(bank_size))
    return loop(runner, loader, Evaluator([KNNAccuracy(**metric)]), loader)


@pytest.mark.parametrize('loop, split', [(KNNValLoop, 'val'),
                                         (KNNTestLoop, 'test')])
def test_loop_checks_k_and_topk_before_extraction(loop, split):
    with pytest.raises(DistillerConfigError, match=re.escape(
            f'{split}_evaluator with {split}_cfg.bank_dataloader: '
            'KNNAccuracy.k=20 neighbours, but the feature bank has 12 '
            'images; set k <= 12')):
        build_loop(loop, 12, k=20, topk=(1, ))
    with pytest.raises(DistillerConfigError, match=re.escape(
            'KNNAccuracy.topk=(1, 5) asks for the top 5 of 3 classes')):
        build_loop(loop, 12, k=10, topk=(1, 5))
    built = build_loop(loop, 12, k=12, topk=(1, 3))
    assert built.num_classes == 3


def test_loops_registered():
    assert LOOPS.get('KNNValLoop') is not None
    assert LOOPS.get('KNNTestLoop') is not None
