"""The synthesis folder: an output path that is a file is refused before
anything is written; a manifest is found from the folder or its train/; its
grid has one row per class, readable cells and the teacher's scores."""
import json

import numpy as np
import pytest
from PIL import Image

from cls_kd.datafree import (
    SynthesisOutput,
    class_folder_names,
    find_synthesis,
)
from cls_kd.datafree.grid import MAX_SIDE, cell_size, draw_synthesis_grid


def test_an_output_path_under_a_file_is_refused(tmp_path):
    existing = tmp_path / 'notes.txt'
    existing.write_text('kept')
    with pytest.raises(NotADirectoryError) as error:
        SynthesisOutput(str(existing / 'synth'), ['0'], grayscale=True)
    assert str(error.value) == (
        f'{existing}/synth lies under the file {existing}: name a new '
        f'folder, or the folder of a synthesis run to continue it.')
    assert existing.read_text() == 'kept'


def test_find_synthesis_from_the_folder_or_its_train_split(tmp_path):
    manifest = dict(synthesis=dict(num_images=4), complete=True)
    (tmp_path / 'train').mkdir()
    (tmp_path / 'manifest.json').write_text(json.dumps(manifest))
    for folder in (tmp_path, tmp_path / 'train', f'{tmp_path}/train/'):
        assert find_synthesis(str(folder)) == (str(tmp_path), manifest)
    # Another tool's manifest.json is not a synthesis run's.
    (tmp_path / 'manifest.json').write_text(json.dumps(dict(files=3)))
    assert find_synthesis(str(tmp_path / 'train')) is None


# Per-class solid colours: the pixel at the centre of each drawn image tells
# which class's folder it came from.
COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]


def _folder(root, scores=True, size=8, per_class=3):
    """A finished synthesis folder: 3 classes, ``per_class`` images each of
    the class's colour, in one batch (image i of class i % 3, as the tool's
    balanced labels); with or without the teacher's scores in the record.
    """
    classes = ['tench', 'goldfish', 'great white shark']
    folders = class_folder_names(classes)
    output = SynthesisOutput(str(root), folders, grayscale=False)
    manifest = dict(
        teacher=dict(config='/x/resnet18-c16_1xb64_digits.py'),
        student=None, checkpoint='/x/epoch_15.pth', seed=0,
        synthesis=dict(phases=[dict(size=size // 2, iters=30),
                               dict(size=size, iters=50)],
                       teacher_size=32, intra_divergence=None),
        classes=classes, folders=folders)
    output.start(manifest)
    labels = [i % 3 for i in range(3 * per_class)]
    images = np.stack([np.full((size, size, 3), COLOURS[k], np.uint8)
                       for k in labels])
    record = dict(images=len(labels), teacher_top1=1.)
    if scores:
        # Image i: probability 0.5 + i / 100; image 4 (class 1) is taken
        # for class 2 by the teacher.
        record.update(
            teacher_probs=[0.5 + i / 100 for i in range(len(labels))],
            teacher_predictions=[2 if i == 4 else k
                                 for i, k in enumerate(labels)])
    output.write_batch(0, images, labels, record)
    output.finish(manifest, output.records(1))
    return output


def _centres(grid):
    picture = np.asarray(Image.open(grid.path).convert('RGB'))
    half = grid.cell // 2
    return [[tuple(picture[y + half, x + half]) for x, y in row]
            for row in grid.origins]


def test_grid_rows_follow_classes_and_show_the_teacher_scores(tmp_path):
    output = _folder(tmp_path)
    grid = output.write_grid(per_class=2)
    assert grid.path == str(tmp_path / 'grid.png')
    assert grid.classes == ['tench', 'goldfish', 'great white shark']
    # Row k: class k's first two files, b00000_{k:03d} and b00000_{k+3}.
    assert grid.labels == [['0.50', '0.53'], ['0.51', '0.54'],
                           ['0.52', '0.55']]
    assert _centres(grid) == [[c, c] for c in COLOURS]
    # 8 px images drawn at 96 px by a whole factor (12), each pixel a
    # 12 x 12 block; the picture holds the grid and the labels beside it.
    assert grid.cell == 96
    width, height = Image.open(grid.path).size
    # A regular grid: 4 px between images, 18 px under each row for the
    # scores, room for the class names on the left, all inside the PNG.
    x, y = grid.origins[0][0]
    assert grid.origins == [[(x, y + 114 * r), (x + 100, y + 114 * r)]
                            for r in range(3)]
    assert x >= 8 * 17 and x + 196 <= width and y + 3 * 114 <= height
    assert "the teacher's probability of its row's class" in grid.title
    assert grid.title.splitlines()[0] == (
        'DeepInversion images from the teacher resnet18-c16_1xb64_digits '
        '(epoch_15.pth)')
    assert '8×8 px shown at 96 px (nearest neighbour)' in grid.title
    assert '80 iterations (30 at 4 px, 50 at 8 px)' in grid.title


def test_a_folder_without_scores_draws_and_says_so(tmp_path):
    output = _folder(tmp_path, scores=False)
    grid = output.write_grid(per_class=3, num_classes=2)
    assert grid.labels == [['', '', ''], ['', '', '']]
    assert grid.title.splitlines()[-1] == (
        'No teacher scores: this folder was written before synthesize.py '
        'stored them; no confidences shown.')
    assert _centres(grid) == [[COLOURS[0]] * 3, [COLOURS[1]] * 3]


@pytest.mark.parametrize('size, columns, rows, cell', [
    (8, 8, 10, 96),  # x12
    (32, 8, 10, 96),  # x3
    (60, 8, 10, 120),  # x2
    (224, 8, 3, 224),  # as it is
    (224, 8, 10, 181),  # 10 rows of 224 px: shrunk to fit 2048 px
    (224, 24, 3, 80),  # 24 ImageNet images a row: shrunk to fit
    # 29 a row leave (2048 - 10) // 29 - 4 = 66 px; 7 x 9 = 63 is below 64:
    # 66 px, not a whole factor.
    (7, 29, 2, 66),
])
def test_grid_cells_are_readable_and_the_figure_bounded(size, columns, rows,
                                                         cell):
    assert cell_size(size, columns, rows) == cell
    assert columns * cell <= MAX_SIDE and rows * cell <= MAX_SIDE


def test_large_images_are_shrunk_and_counts_are_checked(tmp_path):
    _folder(tmp_path, size=224, per_class=10)
    grid = draw_synthesis_grid(str(tmp_path), per_class=10)
    # 10 x 224 px would be wider than 2048: (2048 - 10) // 10 - 4 px.
    assert grid.cell == 199
    assert _centres(grid)[2] == [COLOURS[2]] * 10
    assert Image.open(grid.path).size[0] <= 2048 + 200
    with pytest.raises(ValueError) as error:
        draw_synthesis_grid(str(tmp_path), per_class=40)
    assert str(error.value) == (
        'per_class must be an integer in [1, 29] (images of at least 64 px '
        'in a figure of at most 2048 px); got 40.')
    with pytest.raises(ValueError, match=r'classes must be 1 to 23 class '
                       r'indices in \[0, 3\); got \[0, 3\]'):
        draw_synthesis_grid(str(tmp_path), classes=[0, 3])
