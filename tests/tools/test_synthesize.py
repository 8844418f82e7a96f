"""tools/synthesize.py: the folder it writes, resuming, refusing other
settings, the rank split. Tiny runs: the digits teacher with random
weights, 8x8 images, a few iterations."""
import importlib.util
import json
import os
import os.path as osp
import shlex
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

from cls_kd.datafree import (
    balanced_labels,
    batch_generator,
    class_folder_names,
    rank_batches,
)
from cls_kd.datafree.grid import draw_synthesis_grid
from cls_kd.models.teachers import build_teacher

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(ROOT, 'configs', 'dearkd', 'synthesis',
                  'deepinversion_resnet18-c16_digits.py')
# 5 batches of 4 (2 images per class), phases of 2 iterations at 4 and 8 px.
TINY = [
    'teacher.random_init=True', 'teacher.checkpoint=None',
    'synthesis.num_images=20', 'synthesis.batch_size=4',
    'synthesis.phases.0.size=4', 'synthesis.phases.0.iters=2',
    'synthesis.phases.1.size=8', 'synthesis.phases.1.iters=2',
    'synthesis.log_interval=1'
]


def _tool():
    path = osp.join(ROOT, 'tools', 'synthesize.py')
    spec = importlib.util.spec_from_file_location('tool_synthesize', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def one_thread():
    """In-process runs compute like the one-thread subprocess run."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def full_run(tmp_path_factory):
    """An uninterrupted run from another directory: (out, stdout)."""
    elsewhere = tmp_path_factory.mktemp('elsewhere')
    out = str(tmp_path_factory.mktemp('synth') / 'out')
    proc = subprocess.run(
        [
            sys.executable,
            osp.join(ROOT, 'tools', 'synthesize.py'), CONFIG, '--out', out,
            '--cfg-options', *TINY
        ],
        cwd=elsewhere,
        env=dict(os.environ, OMP_NUM_THREADS='1'),
        capture_output=True,
        text=True,
        timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc.stdout


def _images(out):
    found = {}
    for folder in sorted(os.listdir(osp.join(out, 'train'))):
        for name in sorted(os.listdir(osp.join(out, 'train', folder))):
            path = osp.join(out, 'train', folder, name)
            found[f'{folder}/{name}'] = np.asarray(Image.open(path))
    return found


@pytest.mark.slow
def test_folder_manifest_and_dataset(full_run):
    out, stdout = full_run
    assert 'batch 5/5 (5/5 here)' in stdout and 'ETA' in stdout
    assert 'batch 1/5 phase 2/2 (8px) iter 2/2' in stdout
    images = _images(out)
    assert sorted(os.listdir(osp.join(out, 'train'))) == [
        str(k) for k in range(10)
    ]
    assert len(images) == 20
    # Batch 1 holds images 4..7 of the run: classes 4, 5, 6, 7.
    assert set(images) >= {'4/b00001_000.png', '7/b00001_003.png'}
    assert all(img.shape == (8, 8) and img.dtype == np.uint8
               for img in images.values())  # gray, as the digits are
    with open(osp.join(out, 'manifest.json')) as f:
        manifest = json.load(f)
    assert manifest['complete'] and manifest['num_images'] == 20
    assert manifest['seed'] == 0 and manifest['classes'] == [
        str(k) for k in range(10)
    ]
    assert manifest['synthesis']['phases'] == [
        dict(size=4, iters=2), dict(size=8, iters=2)
    ]
    assert manifest['synthesis']['weights'] == dict(
        tv=1e-2, l2=1e-5, bn=0.01, first_bn=10., adaptive=0.2)
    assert manifest['synthesis']['lr'] == 0.25  # a default filled in
    assert manifest['teacher']['random_init'] is True
    assert manifest['teacher']['config'] == osp.join(
        ROOT, 'configs', 'digits', 'resnet18-c16_1xb64_digits.py')
    assert set(manifest['versions']) >= {'cls_kd', 'torch'}
    batches = manifest['batches']
    assert [b['index'] for b in batches] == [0, 1, 2, 3, 4]
    assert batches[1]['label_counts'] == {'4': 1, '5': 1, '6': 1, '7': 1}
    assert set(batches[0]['losses']) == {'ce', 'tv', 'l2', 'bn', 'total'}
    assert all(0 <= b['teacher_top1'] <= 1 and b['seconds'] > 0
               for b in batches)
    # Per image, in batch order: the teacher's probability of the image's
    # class and its top-1 class, whose agreement is the batch's top-1.
    for b in batches:
        labels = balanced_labels(b['index'], 4, 10).tolist()
        assert len(b['teacher_probs']) == 4
        assert all(0 <= p <= 1 for p in b['teacher_probs'])
        assert b['teacher_top1'] == pytest.approx(np.mean(
            [p == k for p, k in zip(b['teacher_predictions'], labels)]))
    assert f'{out}/grid.png (other classes or counts: python ' \
        f'tools/analysis/synthesis_grid.py {out} --num-classes N ' \
        f'--per-class M).' in stdout

    from mmpretrain.datasets import CustomDataset
    dataset = CustomDataset(data_root=out, data_prefix='train', pipeline=[])
    assert len(dataset) == 20 and len(dataset.CLASSES) == 10
    for info in dataset.data_list:
        folder = osp.basename(osp.dirname(info['img_path']))
        assert info['gt_label'] == int(folder)


@pytest.mark.slow
def test_resume_skips_finished_batches_and_matches(full_run, tmp_path,
                                                   capsys, one_thread,
                                                   monkeypatch):
    tool = _tool()
    monkeypatch.chdir(tmp_path)
    out = str(tmp_path / 'out')
    args = [CONFIG, '--out', out, '--cfg-options', *TINY]
    tool.main(args + ['--max-batches', '2'])
    assert '3 of 5 batches left' in capsys.readouterr().out
    with open(osp.join(out, 'manifest.json')) as f:
        manifest = json.load(f)
    assert manifest['complete'] is False
    # What finishes the run (tools/train.py names it for such a folder):
    # the same settings, without --max-batches.
    command = shlex.split(manifest['command'])
    assert command[:5] == [
        'python',
        osp.join(ROOT, 'tools', 'synthesize.py'), CONFIG, '--out', out
    ]
    assert command[5:] == ['--cfg-options', *TINY]
    finished = sorted(
        osp.join(root, name) for root, _, names in os.walk(out)
        for name in names if 'b00000' in name or 'b00001' in name)
    assert len(finished) == 2 * 4 + 2  # the PNGs and the records
    mtimes = {p: os.stat(p).st_mtime_ns for p in finished}

    tool.main(command[2:])
    stdout = capsys.readouterr().out
    assert '2 of 5 batches already done, skipping them' in stdout
    assert 'batch 1/5' not in stdout and 'batch 3/5' in stdout
    assert {p: os.stat(p).st_mtime_ns for p in finished} == mtimes
    with open(osp.join(out, 'manifest.json')) as f:
        assert json.load(f)['complete'] is True
    resumed, uninterrupted = _images(out), _images(full_run[0])
    assert resumed.keys() == uninterrupted.keys()
    for key in resumed:
        assert np.array_equal(resumed[key], uninterrupted[key]), key


@pytest.mark.slow
def test_other_settings_are_refused(full_run, tmp_path, monkeypatch):
    out = full_run[0]
    before = os.stat(osp.join(out, 'manifest.json')).st_mtime_ns
    with pytest.raises(SystemExit) as error:
        _tool().main([
            CONFIG, '--out', out, '--cfg-options', *TINY, 'synthesis.seed=1',
            'synthesis.log_interval=0'
        ])
    message = str(error.value.code)
    assert 'other settings' in message and 'synthesis.seed: 0 -> 1' in message
    assert 'log_interval' not in message  # logging changes no image
    assert os.stat(osp.join(out, 'manifest.json')).st_mtime_ns == before


def test_colour_images_are_rgb_pngs(tmp_path):
    out = str(tmp_path / 'out')
    _tool().main([
        CONFIG, '--out', out, '--cfg-options', *TINY,
        'synthesis.grayscale=False', 'synthesis.num_images=4'
    ])
    images = _images(out)
    assert len(images) == 4
    assert all(img.shape == (8, 8, 3) for img in images.values())
    # Images 0..3 are classes 0..3: rows 0..3, in colour, 12 times larger;
    # the rows of 4..9 are empty.
    grid = draw_synthesis_grid(out, out=str(tmp_path / 'again.png'))
    picture = np.asarray(Image.open(osp.join(out, 'grid.png')).convert('RGB'))
    assert grid.classes == [str(k) for k in range(10)]
    assert [len(row) for row in grid.origins] == [1] * 4 + [0] * 6
    for k, [(x, y)] in enumerate(grid.origins[:4]):
        image = images[f'{k}/b00000_{k:03d}.png']
        assert np.array_equal(picture[y:y + 96:12, x:x + 96:12], image)


@pytest.mark.slow
def test_grid_redraws_rows_by_class_with_the_teacher_scores(
        full_run, tool_loader, tmp_path):
    """tools/analysis/synthesis_grid.py on the run's folder: the same
    picture as the run's own by default; chosen classes in their order,
    each image nearest-neighbour upscaled, labelled with its stored
    score."""
    out = full_run[0]
    tool = tool_loader('tools/analysis/synthesis_grid.py')
    again = tool.main([out, '--out', str(tmp_path / 'again.png')])
    assert np.array_equal(np.asarray(Image.open(again.path)),
                          np.asarray(Image.open(osp.join(out, 'grid.png'))))
    assert again.classes == [str(k) for k in range(10)]
    assert again.cell == 96 and [len(r) for r in again.labels] == [2] * 10

    grid = tool.main([osp.join(out, 'train'), '--classes', '7', '2',
                      '--per-class', '2', '--out', str(tmp_path / 'g.png')])
    assert grid.classes == ['7', '2']
    with open(osp.join(out, 'manifest.json')) as f:
        batches = json.load(f)['batches']
    # Class 7: images 7 and 17 of the run (batch 1 position 3, batch 4
    # position 1); class 2: images 2 and 12 (batch 0 position 2, batch 3
    # position 0).
    places = [[(1, 3), (4, 1)], [(0, 2), (3, 0)]]
    assert grid.labels == [
        [f'{batches[b]["teacher_probs"][i]:.2f}' for b, i in row]
        for row in places]
    picture = np.asarray(Image.open(grid.path).convert('L'))
    for (folder, row), origins in zip((('7', places[0]), ('2', places[1])),
                                      grid.origins):
        for (b, i), (x, y) in zip(row, origins):
            image = _images(out)[f'{folder}/b{b:05d}_{i:03d}.png']
            # 8 -> 96 px: pixel (r, c) fills the block at 12 r, 12 c.
            assert np.array_equal(picture[y:y + 96:12, x:x + 96:12], image)
            assert np.array_equal(picture[y + 11:y + 96:12,
                                          x + 11:x + 96:12], image)


def test_grid_of_a_folder_that_is_not_a_synthesis(tool_loader, tmp_path):
    with pytest.raises(SystemExit) as error:
        tool_loader('tools/analysis/synthesis_grid.py').main([str(tmp_path)])
    assert error.value.code == (
        f'synthesis_grid.py: error: {tmp_path} holds no synthesis '
        f'manifest.json: name the --out folder of a tools/synthesize.py run '
        f'(or its train/).')


def test_intra_divergence_needs_same_class_images_in_a_batch(tmp_path):
    config = CONFIG.replace('deepinversion_', 'deepinversion-intra-div_')
    with pytest.raises(SystemExit) as error:
        _tool().main([config, '--out', str(tmp_path), '--cfg-options', *TINY])
    assert 'set synthesis.class_repeats' in str(error.value.code)
    assert not os.listdir(tmp_path)  # refused before writing anything


def test_relative_teacher_config_is_found_from_anywhere(tmp_path,
                                                        monkeypatch):
    configs = tmp_path / 'configs'
    configs.mkdir()
    (configs / 'teacher.py').write_text('model = dict(type="X")\n')
    (configs / 'synth.py').write_text(
        'teacher = dict(config="./teacher.py", checkpoint=None)\n')
    monkeypatch.chdir(tmp_path)
    cfg = _tool().load_config(str(configs / 'synth.py'))
    assert cfg.teacher.config == str(configs / 'teacher.py')


@pytest.mark.parametrize('name', [
    'deepinversion_regnety-160_in1k.py',
    'deepinversion-intra-div_regnety-160_in1k.py',
    'adi_regnety-160_in1k.py',
    'deepinversion_resnet18-c16_digits.py',
    'deepinversion-intra-div_resnet18-c16_digits.py'
])
def test_synthesis_configs_load(name):
    cfg = Config.fromfile(osp.join(osp.dirname(CONFIG), name))
    settings = _tool().synthesis_settings(cfg)
    # Digits: 8x8 images (as the dataset's files), shown to the teacher at
    # the 32x32 its pipeline resizes them to.
    assert settings['phases'][-1]['size'] == (224 if 'in1k' in name else 8)
    assert settings['teacher_size'] == (None if 'in1k' in name else 32)
    assert settings['weights']['bn'] == 0.01
    assert settings['weights']['first_bn'] == 10
    # DeepInversion's 100-iteration warm-up; none in the digits' short
    # phases (the README's digits numbers).
    assert settings['warmup_iters'] == (100 if 'in1k' in name else 0)
    if 'in1k' in name:  # the paper's setting
        assert settings['weights']['tv'] == 1e-4 and settings['jitter'] == 30
        assert settings['phases'] == [
            dict(size=112, iters=2000), dict(size=224, iters=1000)
        ]
        assert cfg.teacher.data_preprocessor.to_rgb is True
    if 'intra-div' in name:
        assert set(settings['intra_divergence']) == {
            'diversity', 'boundary', 'margin'
        }
    # ADI: a student (DeepInversion's competitor, an ImageNet ResNet-18),
    # weight 0.2 at T = 3; the others have none.
    assert bool(cfg.get('student')) == name.startswith('adi')
    if name.startswith('adi'):
        assert settings['weights']['adaptive'] == 0.2
        assert settings['adaptive_temperature'] == 3
        assert cfg.student.config == (
            'mmpretrain::resnet/resnet18_8xb32_in1k.py')


def test_adi_student_builds_from_its_spec():
    """The ADI config's student spec builds (random weights: no download)
    as a frozen ResNet-18 with its ImageNet normalisation."""
    cfg = Config.fromfile(
        osp.join(osp.dirname(CONFIG), 'adi_regnety-160_in1k.py'))
    spec = dict(cfg.student, checkpoint=None, random_init=True)
    model, preprocessor = build_teacher('student', spec)
    assert type(model.backbone).__name__ == 'ResNet'
    assert model.backbone.depth == 18
    assert not any(p.requires_grad for p in model.parameters())
    assert preprocessor['mean'] == [123.675, 116.28, 103.53]
    assert preprocessor['to_rgb'] is True


@pytest.mark.parametrize('world_size', [1, 2, 3, 8])
def test_rank_split_gives_every_batch_once(world_size):
    for num_batches in range(12):
        split = [
            rank_batches(num_batches, r, world_size)
            for r in range(world_size)
        ]
        assert sorted(b for part in split for b in part) == list(
            range(num_batches))
    with pytest.raises(ValueError, match='rank 2 is not in'):
        rank_batches(4, 2, 2)


def test_labels_and_noise_depend_on_the_batch_only():
    assert balanced_labels(1, 4, 3).tolist() == [1, 2, 0, 1]
    assert balanced_labels(0, 6, 3).tolist() == [0, 1, 2, 0, 1, 2]
    assert balanced_labels(1, 4, 3, class_repeats=2).tolist() == [2, 2, 0, 0]
    same = [torch.randn(3, generator=batch_generator(0, 5)) for _ in '12']
    assert torch.equal(*same)
    assert not torch.equal(
        torch.randn(3, generator=batch_generator(0, 6)), same[0])
    assert not torch.equal(
        torch.randn(3, generator=batch_generator(1, 5)), same[0])


def test_class_folders_sort_in_class_order():
    assert class_folder_names([str(k) for k in range(10)]) == [
        str(k) for k in range(10)
    ]
    folders = class_folder_names([str(k) for k in range(12)])
    assert folders[:3] == ['00_0', '01_1', '02_2'] and sorted(folders) == \
        folders
    assert class_folder_names(['tench, Tinca tinca', 'goldfish']) == [
        '0_tench_Tinca_tinca', '1_goldfish'
    ]


@pytest.mark.parametrize('option, message', [
    ('synthesis.phases.0.size=16', r'deepinversion_resnet18-c16_digits\.py:'
     r' No phase may be larger than the last one'),
    ('synthesis.weights.contrast=1.0', r"Unknown loss weights \['contrast'\]"),
])
def test_config_mistakes_stop_with_a_message(tmp_path, option, message):
    with pytest.raises(SystemExit, match='synthesize.py: error: .*' + message):
        _tool().main([CONFIG, '--out', str(tmp_path), '--cfg-options',
                      *TINY, option])
    assert not os.listdir(tmp_path)  # nothing written


def test_unreadable_teacher_checkpoint_is_a_message(tmp_path):
    with pytest.raises(SystemExit, match="error: Teacher 'teacher': Cannot "
                       'read checkpoint .*missing.pth'):
        _tool().main([
            CONFIG, '--out', str(tmp_path / 'out'), '--cfg-options',
            'teacher.checkpoint=' + str(tmp_path / 'missing.pth')
        ])


@pytest.mark.parametrize('option, message', [
    ('synthesis.phases.0.iters=0',
     'synthesis.phases.0.iters must be an integer >= 1; got 0.'),
    ('synthesis.phases.1.iters=-3',
     'synthesis.phases.1.iters must be an integer >= 1; got -3.'),
    ('synthesis.phases.1.size=0',
     'synthesis.phases.1.size must be an integer >= 1; got 0.'),
    ('synthesis.lr=nan', 'synthesis.lr must be a finite number > 0; got nan.'),
    ('synthesis.weights.bn=-1',
     'synthesis.weights.bn must be a finite number >= 0; got -1.'),
    ('synthesis.weights.tv=inf',
     'synthesis.weights.tv must be a finite number >= 0; got inf.'),
    ('synthesis.weights.l2=nan',
     'synthesis.weights.l2 must be a finite number >= 0; got nan.'),
    ('synthesis.batch_size=0',
     'synthesis.batch_size must be an integer >= 1; got 0.'),
    ('synthesis.num_images=-1',
     'synthesis.num_images must be an integer >= 1; got -1.'),
    ('synthesis.teacher_size=0',
     'synthesis.teacher_size must be an integer >= 1; got 0.'),
    ('synthesis.warmup_iters=3', 'synthesis.warmup_iters must be in [0, 2]'),
])
def test_out_of_range_numbers_stop_before_any_work(tmp_path, option,
                                                    message):
    """Refused while reading the settings: no teacher built, no --out."""
    out = tmp_path / 'out'
    with pytest.raises(SystemExit) as error:
        _tool().main([CONFIG, '--out', str(out), '--cfg-options', *TINY,
                      option])
    assert error.value.code.startswith(
        f'synthesize.py: error: {CONFIG}: {message}')
    assert not out.exists()


@pytest.mark.parametrize('under', [False, True])
def test_out_naming_a_file_is_refused(tmp_path, under):
    existing = tmp_path / 'images.png'
    existing.write_bytes(b'not a folder')
    out = existing / 'synth' if under else existing
    with pytest.raises(SystemExit) as error:
        _tool().main([CONFIG, '--out', str(out), '--cfg-options', *TINY])
    what = f'lies under the file {existing}' if under else \
        'is a file, not a folder'
    assert error.value.code == (
        f'synthesize.py: error: --out {out} {what}: name a new folder, or '
        f'the folder of a synthesis run to continue it.')
    assert existing.read_bytes() == b'not a folder'
    assert os.listdir(tmp_path) == ['images.png']


@pytest.mark.parametrize('value', ['0', '-1'])
def test_max_batches_below_one_is_refused(tmp_path, capsys, value):
    out = tmp_path / 'out'
    with pytest.raises(SystemExit) as error:
        _tool().main([CONFIG, '--out', str(out), '--max-batches', value])
    assert error.value.code == 2
    assert (f'argument --max-batches: must be an integer >= 1; got {value}'
            in capsys.readouterr().err)
    assert not out.exists()
