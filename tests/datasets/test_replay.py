"""SeededAugmentDataset: the same (seed, epoch, index) rebuilds the same
view bit for bit; an unknown transform is refused by name."""
import random

import numpy as np
import pytest
import torch

import cls_kd
from cls_kd.datasets import SeededAugmentDataset, view_seed

cls_kd.register_all_modules(init_default_scope=False)

PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(32, 32), interpolation='bicubic'),
    dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.3, 1.0)),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandAugment', policies='timm_increasing', num_policies=2,
         total_level=10, magnitude_level=9, magnitude_std=0.5,
         hparams=dict(pad_val=0)),
    dict(type='RandomErasing', erase_prob=0.5),
    dict(type='PackInputs'),
]


def _wrapper(digits_root, pipeline=PIPELINE, seed=0):
    return SeededAugmentDataset(
        dataset=dict(type='mmpretrain.CustomDataset', data_root=digits_root,
                     data_prefix='train', pipeline=pipeline, indices=24),
        seed=seed)


def _pass(dataset, epoch):
    dataset.set_epoch(epoch)
    return torch.stack([dataset[i]['inputs'] for i in range(len(dataset))])


def test_same_seed_epoch_and_index_give_identical_views(digits_root):
    first = _pass(_wrapper(digits_root), 1)
    # Another wrapper (another run), global RNGs in another state.
    random.seed(123)
    np.random.seed(123)
    torch.manual_seed(123)
    second = _pass(_wrapper(digits_root), 1)
    assert torch.equal(first, second)
    # The augmentation does something at all: views differ per epoch.
    other_epoch = _pass(_wrapper(digits_root), 2)
    assert (other_epoch != first).any(dim=(1, 2, 3)).sum() >= 20
    other_seed = _pass(_wrapper(digits_root, seed=1), 1)
    assert not torch.equal(other_seed, first)


def test_global_generators_are_left_as_they_were(digits_root):
    dataset = _wrapper(digits_root)
    dataset.set_epoch(0)
    np.random.seed(5)
    expected = np.random.rand()
    np.random.seed(5)
    dataset[3]
    assert np.random.rand() == expected


def test_samples_carry_their_replay_key(digits_root):
    dataset = _wrapper(digits_root, seed=7)
    dataset.set_epoch(4)
    meta = dataset[5]['data_samples'].metainfo
    assert (meta['replay_index'], meta['replay_epoch'],
            meta['replay_seed']) == (5, 4, 7)
    assert dataset.view(5, 4)['inputs'].equal(dataset[5]['inputs'])


def test_view_seed_is_a_fixed_hash():
    assert view_seed(0, 0, 0) == view_seed(0, 0, 0)
    assert len({view_seed(0, e, i) for e in range(3) for i in range(3)}) == 9
    assert 0 <= view_seed(3, 2, 1) < 2**32


def test_unknown_transform_is_refused_by_name(digits_root):
    pipeline = [dict(type='LoadImageFromFile'),
                dict(type='mmpretrain.GaussianBlur', magnitude_range=(0.1, 2),
                     prob=1.0),
                dict(type='RandomGrayscale', prob=0.5),
                dict(type='Posterize', bits=4),
                dict(type='PackInputs')]
    with pytest.raises(ValueError, match=r"\['Posterize'\] are not "
                       r'known to be replayable.*RandomResizedCrop'):
        _wrapper(digits_root, pipeline)


def _mixup_preprocessor():
    from mmpretrain.models.utils import ClsDataPreprocessor
    return ClsDataPreprocessor(
        num_classes=10, batch_augments=dict(
            augments=[dict(type='Mixup', alpha=0.8),
                      dict(type='CutMix', alpha=1.0)]))


def _batch(indices, epoch=0, seed=0):
    from mmpretrain.structures import DataSample
    torch.manual_seed(0)
    return dict(
        inputs=[torch.randint(0, 255, (3, 8, 8), dtype=torch.uint8)
                for _ in indices],
        data_samples=[DataSample(metainfo=dict(
            replay_index=i, replay_epoch=epoch,
            replay_seed=seed)).set_gt_label(i % 10) for i in indices])


def test_batch_augments_draw_from_the_batch_key():
    """The same batch (members, order, epoch, seed) is mixed the same way
    whatever the global generators hold; another batch key mixes otherwise;
    the global generators are left as they were."""
    from cls_kd.datasets import mix_fingerprint, seed_batch_augments
    pre = _mixup_preprocessor()
    assert seed_batch_augments(pre) and seed_batch_augments(pre)
    assert len(pre._forward_pre_hooks) == 1  # installed once

    def mix(indices, epoch=0, noise=0):
        np.random.seed(noise)
        torch.manual_seed(noise)
        out = pre(_batch(indices, epoch), training=True)
        return out['inputs'], mix_fingerprint(out['data_samples'])

    inputs, fingerprint = mix([0, 1, 2, 3])
    again, fingerprint_again = mix([0, 1, 2, 3], noise=7)
    assert torch.equal(inputs, again)
    assert np.array_equal(fingerprint, fingerprint_again)
    # A one-hot label's fingerprint is its class + 1: these were mixed.
    assert not np.allclose(fingerprint, [1, 2, 3, 4])
    for other in (dict(indices=[1, 0, 2, 3]), dict(indices=[0, 1, 2, 3],
                                                   epoch=1)):
        assert not np.array_equal(mix(**other)[1], fingerprint), other
    np.random.seed(3)
    expected = np.random.rand()
    np.random.seed(3)
    pre(_batch([0, 1, 2, 3]), training=True)
    assert np.random.rand() == expected  # the mixing drew nothing from it


def test_batch_key_is_a_fixed_hash():
    from cls_kd.datasets import batch_key
    assert batch_key(0, 0, [0, 1]) == batch_key(0, 0, np.array([0, 1]))
    assert len({batch_key(0, 0, [0, 1]), batch_key(0, 0, [1, 0]),
                batch_key(1, 0, [0, 1]), batch_key(0, 1, [0, 1])}) == 4
    assert 0 <= batch_key(5, 3, range(64)) < 2**32


def test_repeated_augmentation_sampler_is_refused(digits_root):
    """DeiT's repeated augmentation gives a sample 3 times an epoch to be
    augmented differently: one seeded view per (epoch, sample) cannot."""
    from mmpretrain.datasets import RepeatAugSampler

    from cls_kd.datasets import check_sampler
    dataset = SeededAugmentDataset(
        dict(type='mmpretrain.CustomDataset', data_root=digits_root,
             data_prefix='train', pipeline=[dict(type='LoadImageFromFile')]))
    with pytest.raises(ValueError, match=r'RepeatAugSampler gives each '
                       r'sample 3 times an epoch.*would be identical'):
        check_sampler(RepeatAugSampler(dataset, num_repeats=3))
    check_sampler(RepeatAugSampler(dataset, num_repeats=1))  # no repeats


def test_views_without_an_epoch_are_refused(digits_root):
    """Without SeededAugmentHook (or set_epoch) every epoch would see the
    views of one: refused at the first sample."""
    dataset = _wrapper(digits_root)
    with pytest.raises(RuntimeError, match='no epoch set, so every epoch '
                       'would see the views of one'):
        dataset[0]
    dataset.set_epoch(0)
    assert dataset[0]['data_samples'].metainfo['replay_epoch'] == 0


def test_hook_refuses_an_iteration_based_loop():
    from types import SimpleNamespace

    from cls_kd.datasets import SeededAugmentHook
    runner = SimpleNamespace(train_loop=SimpleNamespace())
    with pytest.raises(ValueError, match='SeededAugmentHook: views are '
                       'seeded per epoch, but the training loop is '
                       'SimpleNamespace'):
        SeededAugmentHook().before_train(runner)


def test_epoch_batches_rebuild_each_rank(digits_root):
    """The batches of W training processes, from any process: rank r's
    indices are DefaultSampler's for rank r of W."""
    from mmengine.dataset import DefaultSampler

    from cls_kd.datasets import epoch_batches, rank_indices
    dataset = _wrapper(digits_root)  # 24 samples
    sampler = DefaultSampler(dataset, shuffle=True, seed=3)
    whole = rank_indices(sampler, 0, 1, epoch=2)
    assert sorted(whole) == list(range(24))
    assert [rank_indices(sampler, r, 2, 2) for r in (0, 1)] == [
        whole[0::2], whole[1::2]]
    batches = epoch_batches(sampler, 5, 2, 2)
    assert [len(b) for b in batches] == [5, 5, 2, 5, 5, 2]
    assert [len(b) for b in epoch_batches(sampler, 5, 2, 2,
                                          drop_last=True)] == [5, 5, 5, 5]
    assert sorted(i for b in batches for i in b) == list(range(24))
