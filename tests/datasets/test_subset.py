"""SubsetDataset: a fixed, seeded, class-balanced fraction."""
import collections

import pytest
from mmengine.config import Config

import cls_kd
from cls_kd.datasets import SubsetDataset, subset_indices
from cls_kd.registry import DATASETS

cls_kd.register_all_modules()


def test_indices_by_hand():
    labels = [0] * 8 + [1] * 4
    keep = subset_indices(labels, 0.25, seed=0)
    # round(0.25 * 8) = 2 of class 0, round(0.25 * 4) = 1 of class 1.
    assert len(keep) == 3 and keep == sorted(keep)
    assert collections.Counter(labels[i] for i in keep) == {0: 2, 1: 1}
    assert keep == subset_indices(labels, 0.25, seed=0)  # repeatable
    assert any(subset_indices(labels, 0.25, seed=s) != keep
               for s in range(1, 6))
    # Every class keeps at least one sample.
    assert collections.Counter(
        labels[i] for i in subset_indices(labels, 0.01, 0)) == {0: 1, 1: 1}
    assert len(subset_indices(labels, 0.5, 0, per_class=False)) == 6
    assert subset_indices(labels, 1.0, 3) == list(range(12))
    for bad in (0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r'fraction must be in \(0, 1\]'):
            subset_indices(labels, bad, 0)


def test_wraps_the_digits_train_split(digits_root):
    inner = dict(type='CustomDataset', data_root=digits_root,
                 data_prefix='train', pipeline=[])
    full = DATASETS.build(inner)
    subset = DATASETS.build(
        dict(type='SubsetDataset', fraction=0.25, seed=0, dataset=inner))
    assert isinstance(subset, SubsetDataset)
    # 1438 images, about 144 per class: a quarter of each class.
    counts = collections.Counter(subset.get_gt_labels().tolist())
    full_counts = collections.Counter(full.get_gt_labels().tolist())
    assert counts == {k: round(0.25 * n) for k, n in full_counts.items()}
    assert len(subset) == sum(counts.values())
    first = subset.indices[0]
    assert subset.get_data_info(0)['img_path'] == full.get_data_info(
        first)['img_path']
    assert subset.metainfo['classes'] == full.metainfo['classes']
    assert 'kept=359 of 1438' in repr(subset)


def test_digits_25pct_configs_wrap_the_full_split(repo_root):
    import os.path as osp
    cfg = Config.fromfile(osp.join(
        repo_root, 'configs', 'dearkd',
        'dearkd_resnet18-c16_vit-4x64-p4_1xb64_digits-25pct.py'))
    dataset = cfg.train_dataloader.dataset
    assert (dataset.type, dataset.fraction, dataset.seed) == (
        'SubsetDataset', 0.25, 0)
    assert dataset.dataset.data_prefix == 'train'
    assert cfg.val_dataloader.dataset.type == 'CustomDataset'
