"""The picture of a synthesis folder (``DIR/grid.png``): one row per class,
each image upscaled with nearest neighbour to a readable size, each row
labelled with its class and each image with the teacher's probability of
that class (stored per image in the batch records, see
``tools/synthesize.py``).

Drawn at the end of a run; ``tools/analysis/synthesis_grid.py DIR`` redraws
it for an existing folder.
"""
import json
import math
import os
import os.path as osp
import re
import textwrap
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

__all__ = ['SynthesisGrid', 'cell_size', 'draw_synthesis_grid']

MIN_CELL = 64  # px per image side, at least
CELL = 96  # px per image side aimed at
MAX_SIDE = 2048  # px, the image mosaic's width and height at most
_GAP, _PAD, _STRIP = 4, 10, 18  # px: between images, margins, score line
_LABEL_CHARS = 24  # class names are cut to this many characters
_IMAGE = re.compile(r'^b(\d+)_(\d+)\.png$')


@dataclass
class SynthesisGrid:
    """What :func:`draw_synthesis_grid` drew.

    Attributes:
        path (str): The PNG written.
        title (str): The figure's title (what it shows, and whether the
            folder stores the teacher's scores).
        classes (list[str]): The class of each row, top to bottom.
        labels (list[list[str]]): The label under each image, row by row:
            the teacher's probability of the row's class (``'0.97'``), or
            ``''`` where the folder stores none.
        origins (list[list[tuple[int, int]]]): The top-left pixel ``(x,
            y)`` of each image in the PNG, row by row.
        cell (int): The side of each drawn image in pixels.
    """
    path: str
    title: str
    classes: List[str]
    labels: List[List[str]]
    origins: List[List[Tuple[int, int]]]
    cell: int


def cell_size(image_size: int, columns: int, rows: int) -> int:
    """The side in pixels of each drawn image: the smallest multiple of
    ``image_size`` of at least :data:`CELL` (nearest-neighbour upscaling by
    a whole factor keeps every pixel a square), ``image_size`` itself when
    larger; smaller (but at least :data:`MIN_CELL`) where ``columns`` x
    ``rows`` of them would not fit in :data:`MAX_SIDE`.

    Args:
        image_size (int): The side of the synthesised images.
        columns (int): Images per row.
        rows (int): Rows.
    """
    cell = image_size * max(1, math.ceil(CELL / image_size))
    fit = max(MIN_CELL, min((MAX_SIDE - _PAD) // columns - _GAP,
                            (MAX_SIDE - _PAD) // rows - _GAP - _STRIP))
    if cell <= fit:
        return cell
    whole = image_size * (fit // image_size)
    return whole if whole >= MIN_CELL else fit


def _check_count(name: str, value: int, top: int) -> None:
    if not isinstance(value, int) or not 1 <= value <= top:
        raise ValueError(
            f'{name} must be an integer in [1, {top}] (images of at least '
            f'{MIN_CELL} px in a figure of at most {MAX_SIDE} px); got '
            f'{value!r}.')


def _record(root: str, batch: int,
            cache: Dict[int, Optional[dict]]) -> Optional[dict]:
    """The record of ``batch``, None if it is not there."""
    if batch not in cache:
        path = osp.join(root, 'batches', f'b{batch:05d}.json')
        cache[batch] = None
        if osp.isfile(path):
            with open(path) as f:
                cache[batch] = json.load(f)
    return cache[batch]


def _score(root: str, name: str, label: int,
           cache: Dict[int, Optional[dict]]) -> Optional[Tuple[float, bool]]:
    """``(probability of label, teacher's top-1 is label)`` of the image
    file ``name``; None when its batch record stores no scores (folders
    written before they were stored)."""
    match = _IMAGE.match(name)
    record = match and _record(root, int(match.group(1)), cache)
    if not record or 'teacher_probs' not in record:
        return None
    i = int(match.group(2))
    return (record['teacher_probs'][i],
            record['teacher_predictions'][i] == label)


def _read_rows(root: str, folders: Sequence[str], labels: Sequence[int],
               per_class: int) -> List[List[tuple]]:
    """Per class (its folder and index), its first ``per_class`` images in
    file order, each as ``(pixels, score)`` (see :func:`_score`)."""
    rows, cache = [], {}
    for folder, label in zip(folders, labels):
        directory = osp.join(root, 'train', folder)
        files = sorted(n for n in os.listdir(directory)
                       if n.endswith('.png'))[:per_class] \
            if osp.isdir(directory) else []
        rows.append([(np.asarray(Image.open(osp.join(directory, n))),
                      _score(root, n, label, cache)) for n in files])
    return rows


def _to_rgb(image: np.ndarray, cell: int) -> np.ndarray:
    """``image`` (H x W gray or H x W x 3) as a cell x cell RGB array:
    nearest neighbour up, area average down."""
    picture = Image.fromarray(image).convert('RGB')
    if picture.size != (cell, cell):
        resample = Image.Resampling.NEAREST if cell >= picture.size[0] \
            else Image.Resampling.BOX
        picture = picture.resize((cell, cell), resample)
    return np.asarray(picture)


def _name(path) -> str:
    """A teacher config's short name: its file name without ``.py``."""
    if isinstance(path, str):
        return osp.splitext(osp.basename(path))[0]
    return str((path or {}).get('type', 'a model given inline'))


def _wrap(line: str, limit: int) -> List[str]:
    """``line`` in lines of at most ``limit`` characters, broken after a
    ``'; '`` where it can be, else between words."""
    packed = []
    for part in line.split('; '):
        if packed and len(packed[-1]) + 2 + len(part) <= limit:
            packed[-1] += '; ' + part
        else:
            packed.append(part)
    return [short for part in packed for short in textwrap.wrap(part, limit)]


def _title_lines(manifest: dict, image_size: int, cell: int, shown: int,
                 stored: int) -> List[str]:
    """What the figure shows: the method, teacher, sizes, iterations, how
    the images are labelled."""
    settings = manifest.get('synthesis') or {}
    teacher = manifest.get('teacher') or {}
    method = 'ADI' if manifest.get('student') else 'DeepInversion'
    if settings.get('intra_divergence'):
        method += ' + intra-divergence'
    checkpoint = manifest.get('checkpoint') or teacher.get('checkpoint')
    lines = [f'{method} images from the teacher '
             f'{_name(teacher.get("config"))}' +
             (f' ({osp.basename(checkpoint)})' if checkpoint else '')]
    phases = settings.get('phases') or []
    iters = ', '.join(f'{p["iters"]} at {p["size"]} px' for p in phases)
    facts = [f'{image_size}×{image_size} px ' + (
        f'shown at {cell} px (nearest neighbour)' if cell > image_size else
        f'shown at {cell} px (area average)' if cell < image_size else
        'shown at their size')]
    if settings.get('teacher_size'):
        facts.append(f'seen by the teacher at {settings["teacher_size"]} px')
    if phases:
        facts.append(f'{sum(p["iters"] for p in phases)} iterations '
                     f'({iters})')
    if 'seed' in manifest:
        facts.append(f'seed {manifest["seed"]}')
    if manifest.get('complete') and 'teacher_top1' in manifest:
        facts.append(f'teacher top-1 on all {manifest["num_images"]} '
                     f'images {manifest["teacher_top1"]:.3f}')
    elif not manifest.get('complete'):
        facts.append('unfinished run: the images written so far')
    lines.append('; '.join(facts))
    if stored == shown:
        lines.append("Under each image: the teacher's probability of its "
                     "row's class (red: the teacher's top-1 is another "
                     'class).')
    elif stored:
        lines.append(f"Under each image: the teacher's probability of its "
                     f"row's class (red: its top-1 is another class); "
                     f'{shown - stored} of {shown} images have no stored '
                     f'score.')
    else:
        lines.append('No teacher scores: this folder was written before '
                     'synthesize.py stored them; no confidences shown.')
    return lines


def draw_synthesis_grid(root: str,
                        out: Optional[str] = None,
                        per_class: int = 8,
                        num_classes: int = 10,
                        classes: Optional[Sequence[int]] = None
                        ) -> SynthesisGrid:
    """Draw the images of the synthesis folder ``root``: one row per class
    (the first ``num_classes``, or ``classes``), its first ``per_class``
    images (in file order: batch, then position), upscaled to
    :func:`cell_size`, the class name on the left, the teacher's
    probability of the class under each image, a title saying what is
    shown.

    Args:
        root (str): The folder (``--out`` of ``tools/synthesize.py``).
        out (str, optional): The PNG to write. Defaults to
            ``root/grid.png``.
        per_class (int): Images per row, in [1, 29]. Defaults to 8.
        num_classes (int): Rows: the first classes, in [1, 23]. Defaults
            to 10.
        classes (Sequence[int], optional): The class indices of the rows
            instead, at most 23. Defaults to None.

    Returns:
        SynthesisGrid: The path, title, rows, labels and where each image
        is.

    Raises:
        FileNotFoundError: ``root`` has no ``manifest.json``.
        ValueError: ``per_class``, ``num_classes`` or ``classes`` out of
            range (naming the range), or no image in the rows.
    """
    top_columns = (MAX_SIDE - _PAD) // (MIN_CELL + _GAP)
    top_rows = (MAX_SIDE - _PAD) // (MIN_CELL + _GAP + _STRIP)
    _check_count('per_class', per_class, top_columns)
    manifest_path = osp.join(root, 'manifest.json')
    if not osp.isfile(manifest_path):
        raise FileNotFoundError(
            f'{root} has no manifest.json: name the --out folder of a '
            f'tools/synthesize.py run.')
    with open(manifest_path) as f:
        manifest = json.load(f)
    folders = manifest.get('folders') or sorted(
        os.listdir(osp.join(root, 'train')))
    names = manifest.get('classes') or folders
    if classes is None:
        _check_count('num_classes', num_classes, top_rows)
        classes = range(min(num_classes, len(folders)))
    else:
        classes = list(classes)
        bad = [c for c in classes if not 0 <= c < len(folders)]
        if bad or not 1 <= len(classes) <= top_rows:
            raise ValueError(
                f'classes must be 1 to {top_rows} class indices in [0, '
                f'{len(folders)}); got {classes!r}.')

    rows = _read_rows(root, [folders[c] for c in classes], classes,
                      per_class)
    images = [image for row in rows for image, _ in row]
    if not images:
        raise ValueError(f'{root} holds no images of the classes '
                         f'{list(classes)} yet.')
    image_size = max(images[0].shape[:2])
    columns = max(len(row) for row in rows)
    cell = cell_size(image_size, columns, len(rows))
    shown = len(images)
    stored = sum(score is not None for row in rows for _, score in row)

    # Layout in pixels, the figure at 100 dpi: 1 pt = 100 / 72 px.
    row_names = [textwrap.shorten(str(names[c]), _LABEL_CHARS,
                                  placeholder='...') for c in classes]
    label_width = int(max(len(n) for n in row_names) * 7.5) + 12
    grid_width = columns * (cell + _GAP) - _GAP
    width = max(2 * _PAD + label_width + grid_width, 560)
    lines = _title_lines(manifest, image_size, cell, shown, stored)
    limit = max(40, int((width - 2 * _PAD) / 6.8))  # characters at 9 pt
    wrapped = [part for line in lines for part in _wrap(line, limit)]
    head = 22 + 15 * (len(wrapped) - 1) + 2 * _PAD
    strip = _STRIP if stored else _GAP
    height = head + len(rows) * (cell + strip) + _PAD
    left = _PAD + label_width

    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    origins, labels = [], []
    for r, row in enumerate(rows):
        y = head + r * (cell + strip)
        origins.append([])
        labels.append([])
        for c, (image, score) in enumerate(row):
            x = left + c * (cell + _GAP)
            canvas[y:y + cell, x:x + cell] = _to_rgb(image, cell)
            origins[-1].append((x, y))
            labels[-1].append('' if score is None else f'{score[0]:.2f}')

    fig = Figure(figsize=(width / 100, height / 100), dpi=100)
    fig.figimage(canvas, 0, 0, origin='upper')

    def text(x, y, s, **kwargs):  # x, y: pixels from the top left
        fig.text(x / width, 1 - y / height, s, **kwargs)

    text(_PAD, _PAD, wrapped[0], fontsize=10.5, weight='bold', va='top')
    for k, line in enumerate(wrapped[1:]):
        text(_PAD, _PAD + 22 + 15 * k, line, fontsize=9, va='top')
    for r, (name, row) in enumerate(zip(row_names, rows)):
        y = head + r * (cell + strip)
        text(left - 8, y + cell / 2, name, fontsize=11, ha='right',
             va='center')
        if not row:
            text(left, y + cell / 2, 'no images of this class' +
                 ('' if manifest.get('complete') else ' yet'), fontsize=9,
                 color='gray', va='center')
        for (x, _), label, (_, score) in zip(origins[r], labels[r], row):
            if label:
                text(x + cell / 2, y + cell + 2, label, fontsize=8.5,
                     ha='center', va='top',
                     color='black' if score[1] else '#c00000')
    path = out or osp.join(root, 'grid.png')
    fig.savefig(path, dpi=100)
    return SynthesisGrid(path=path, title='\n'.join(lines),
                         classes=[str(names[c]) for c in classes],
                         labels=labels, origins=origins, cell=cell)
