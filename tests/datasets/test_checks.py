"""Dataset checks before any work: classes counted from the config as
mmpretrain counts them, the model's num_classes, an unfinished synthesis
folder; an unreadable image names its path."""
import json
import os
import os.path as osp

import numpy as np
import pytest
from mmpretrain.datasets import CustomDataset
from PIL import Image

import cls_kd
from cls_kd.datasets import (
    DatasetCheckError,
    check_num_classes,
    check_synthesis_finished,
    dataset_num_classes,
    model_num_classes,
)

cls_kd.register_all_modules(init_default_scope=False)


def eleven_classes(digits_root, where):
    """The digits train split plus a class folder ``10`` of one image."""
    split = where / 'train'
    split.mkdir(parents=True)
    for k in range(10):
        os.symlink(osp.join(digits_root, 'train', str(k)), split / str(k))
    (split / '10').mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(split / '10' / 'x.png')
    return str(where)


def test_class_folders_are_counted_as_mmpretrain_numbers_them(
        digits_root, tmp_path):
    root = eleven_classes(digits_root, tmp_path)
    for data_root, count in ((digits_root, 10), (root, 11)):
        dataset = dict(type='CustomDataset', data_root=data_root,
                       data_prefix='train')
        counted = dataset_num_classes(dataset)
        assert counted == (count, f'{count} class folders in '
                           f'{osp.join(data_root, "train")}')
        built = CustomDataset(data_root=data_root, data_prefix='train')
        assert len(built.CLASSES) == count
        assert max(built.get_gt_labels()) == count - 1


def test_given_classes_type_classes_and_unknown_counts(tmp_path):
    names = tmp_path / 'classes.txt'
    names.write_text('cat\ndog\nbird\n')
    folder = dict(type='CustomDataset', data_root=str(tmp_path),
                  data_prefix='nowhere')
    assert dataset_num_classes(dict(folder, classes=['a', 'b'])) == (
        2, 'its classes')
    assert dataset_num_classes(dict(folder, metainfo=dict(
        classes=('a', 'b', 'c', 'd')))) == (4, 'its classes')
    assert dataset_num_classes(dict(folder, classes=str(names))) == (
        3, f'the class names in {names}')
    # ImageNet's 1000 class names, without reading its folders.
    imagenet = dict(type='ImageNet', data_root='data/imagenet', split='val')
    assert dataset_num_classes(imagenet) == (1000, "ImageNet's classes")
    wrapped = dict(type='SubsetDataset', fraction=0.1, dataset=dict(
        type='ClassBalancedDataset', oversample_thr=0.1, dataset=imagenet))
    assert dataset_num_classes(wrapped)[0] == 1000
    # Unknown until the annotations are read, or no labels at all.
    assert dataset_num_classes(dict(folder, ann_file='train.txt')) is None
    assert dataset_num_classes(dict(imagenet, with_label=False)) is None
    assert dataset_num_classes(folder) is None  # no folder: reported else


def test_model_num_classes_is_the_students_head(tiny_vit):
    assert model_num_classes(tiny_vit(num_classes=7)) == (
        7, 'model.head.num_classes')
    distiller = dict(type='ClassificationDistiller',
                     student=tiny_vit(num_classes=10),
                     teacher=dict(config=tiny_vit(num_classes=1000)))
    assert model_num_classes(distiller) == (10,
                                            'model.student.head.num_classes')
    timm = dict(type='TimmClassifier', model_name='resnet18', num_classes=5)
    assert model_num_classes(timm) == (5, 'model.num_classes')
    label_free = dict(type='LabelFreeDistiller',
                      student=tiny_vit(head=False))
    assert model_num_classes(label_free) is None


def test_a_class_folder_beyond_num_classes_names_both_numbers(
        digits_root, tmp_path, tiny_vit):
    root = eleven_classes(digits_root, tmp_path)
    dataset = dict(type='CustomDataset', data_root=root, data_prefix='train')
    distiller = dict(type='ClassificationDistiller',
                     student=tiny_vit(num_classes=10))
    with pytest.raises(DatasetCheckError) as error:
        check_num_classes(dataset, distiller, 'train_dataloader')
    assert str(error.value) == (
        f'The dataset of train_dataloader has 11 classes (11 class folders '
        f'in {root}/train), but the model scores 10 '
        f'(model.student.head.num_classes=10): its labels would not match '
        f'the head. Set model.student.head.num_classes=11, or give the '
        f"dataset the model's 10 classes.")
    # Fewer classes than the head is refused too: a val folder without a
    # class would number the others differently.
    with pytest.raises(DatasetCheckError, match=r'has 10 classes .* scores '
                       r'12 \(model.head.num_classes=12\)'):
        check_num_classes(dict(dataset, data_root=digits_root),
                          tiny_vit(num_classes=12), 'val_dataloader')
    check_num_classes(dict(dataset, data_root=digits_root), distiller,
                      'train_dataloader')


def _synthesis_folder(root, complete, done):
    """A folder as tools/synthesize.py leaves it: 5 batches of 4."""
    os.makedirs(root / 'train' / '0')
    os.makedirs(root / 'batches')
    for batch in range(done):
        (root / 'batches' / f'b{batch:05d}.json').write_text('{}')
    manifest = dict(
        synthesis=dict(num_images=20, batch_size=4), complete=complete,
        folders=['0'], config='/configs/synth.py', checkpoint='/t.pth',
        command='python tools/synthesize.py /configs/synth.py --out '
        f'{root} --cfg-options teacher.checkpoint=/t.pth')
    (root / 'manifest.json').write_text(json.dumps(manifest))
    return manifest


@pytest.mark.parametrize('prefix', ['train', ''])
def test_an_unfinished_synthesis_folder_names_the_command(tmp_path, prefix):
    root = tmp_path / 'synth'
    manifest = _synthesis_folder(root, complete=False, done=2)
    with pytest.raises(DatasetCheckError) as error:
        check_synthesis_finished(osp.join(root, prefix), 'train_dataloader')
    assert str(error.value) == (
        f'The data folder of train_dataloader holds an unfinished synthesis '
        f'run: {root} (2 of 5 batches done; manifest.json has "complete": '
        f'false). Training on it would use a partial set. Finish it first '
        f'with: {manifest["command"]}')


def test_a_finished_or_plain_folder_passes(tmp_path, digits_root):
    _synthesis_folder(tmp_path / 'synth', complete=True, done=5)
    check_synthesis_finished(str(tmp_path / 'synth' / 'train'), 'x')
    check_synthesis_finished(osp.join(digits_root, 'train'), 'x')


def test_a_manifest_without_its_command_gets_one_from_its_settings(
        tmp_path):
    root = tmp_path / 'synth'
    _synthesis_folder(root, complete=False, done=0)
    manifest = json.loads((root / 'manifest.json').read_text())
    del manifest['command']
    (root / 'manifest.json').write_text(json.dumps(manifest))
    with pytest.raises(DatasetCheckError) as error:
        check_synthesis_finished(str(root / 'train'), 'train_dataloader')
    assert str(error.value).endswith(
        f'Finish it first with: python tools/synthesize.py /configs/synth.py'
        f' --out {root} --cfg-options teacher.checkpoint=/t.pth (with the '
        f'--cfg-options of the run that started it)')


@pytest.mark.parametrize('damage', ['torn', 'not_an_image'])
def test_an_unreadable_image_names_its_path(tmp_path, damage):
    """Today's behaviour, kept: mmcv's LoadImageFromFile names the file it
    cannot decode."""
    folder = tmp_path / 'train' / '0'
    folder.mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / 'a.png')
    png = (folder / 'a.png').read_bytes()
    bad = folder / 'b.png'
    bad.write_bytes(png[:len(png) // 2] if damage == 'torn' else b'text')
    dataset = CustomDataset(
        data_root=str(tmp_path), data_prefix='train',
        pipeline=[dict(type='LoadImageFromFile'), dict(type='PackInputs')])
    dataset[0]
    with pytest.raises(AssertionError, match=f'failed to load image: {bad}'):
        dataset[1]
