import numpy as np
import pytest
import torch

import cls_kd
from cls_kd.evaluation import KNNAccuracy, knn_predict
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


def test_bad_arguments():
    with pytest.raises(ValueError, match='k >= 1'):
        KNNAccuracy(k=0)


def test_loops_registered():
    assert LOOPS.get('KNNValLoop') is not None
    assert LOOPS.get('KNNTestLoop') is not None
