"""Draw (or redraw) the picture of a synthesis folder: one row per class,
each image upscaled with nearest neighbour to at least 64 px, the class
name on the left, the teacher's probability of the class under each image.

    python tools/analysis/synthesis_grid.py DIR [--out PNG]
        [--num-classes N | --classes I [I ...]] [--per-class M]

DIR is the ``--out`` folder of ``tools/synthesize.py`` (or its ``train/``);
the picture is written to ``DIR/grid.png`` unless ``--out`` says otherwise
(``tools/synthesize.py`` writes the default one at the end of a run).
Folders written before the teacher's scores were stored are drawn without
them, and the title says so.

Example::

    python tools/analysis/synthesis_grid.py work_dirs/synth_digits \\
        --classes 0 3 8 --per-class 12 --out digits_038.png
"""
import argparse
import sys
from typing import List, Optional

from cls_kd.datafree import find_synthesis
from cls_kd.datafree.grid import SynthesisGrid, draw_synthesis_grid


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse the command line (``argv`` defaults to ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        'folder', help='the --out folder of a tools/synthesize.py run')
    parser.add_argument(
        '--out', help='the PNG to write (default: FOLDER/grid.png)')
    rows = parser.add_mutually_exclusive_group()
    rows.add_argument(
        '--num-classes', type=int, default=10,
        help='rows: the first N classes (default: 10)')
    rows.add_argument(
        '--classes', type=int, nargs='+',
        help='rows: these class indices, in this order')
    parser.add_argument(
        '--per-class', type=int, default=8,
        help='images per row, the first ones in file order (default: 8)')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> SynthesisGrid:
    """Draw the grid; errors (no synthesis folder, counts out of range)
    stop with a message."""
    args = parse_args(argv)
    found = find_synthesis(args.folder)
    if found is None:
        raise SystemExit(
            f'synthesis_grid.py: error: {args.folder} holds no synthesis '
            f'manifest.json: name the --out folder of a tools/synthesize.py '
            f'run (or its train/).')
    try:
        grid = draw_synthesis_grid(
            found[0], out=args.out, per_class=args.per_class,
            num_classes=args.num_classes, classes=args.classes)
    except ValueError as e:
        raise SystemExit(f'synthesis_grid.py: error: {e}') from None
    print(f'{grid.path}: {len(grid.classes)} rows, {grid.cell} px per '
          f'image.\n{grid.title}')
    return grid


if __name__ == '__main__':
    main(sys.argv[1:])
