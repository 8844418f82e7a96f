"""Print what a config trains: its recipe as normalised facts.

    python tools/analysis/print_recipe.py CONFIG [--diff OTHER]
        [--gpus N] [--filter REGEX] [--cfg-options k=v ...]

One line per fact (optimizer and its parameter-wise settings, gradient
clip, warm-up and schedule end points, epochs, global batch, augmentation,
batch augments, EMA, SyncBN, drop-path, teacher mode, loss weights), read
from the resolved config by ``cls_kd.utils.recipe.recipe_facts``: the same
behaviour reads the same however a config spells it (no weight-decay
exemption is ``{}`` whether ``paramwise_cfg`` is absent or its multipliers
are 1). With ``--diff OTHER``, only the facts on which the two configs
differ, side by side — e.g. a config of yours against the paper's::

    python tools/analysis/print_recipe.py my_config.py \\
        --diff configs/scalekd/scalekd_swin-large_resnet50_8xb256-300e_in1k.py

The global batch takes the GPU count from the file name's ``{N}xb{B}`` tag
unless ``--gpus`` is given.
"""
import argparse
import re
import sys
from typing import List, Optional

from mmengine.config import DictAction

from cls_kd.apis import config_arg, load_config
from cls_kd.utils.recipe import recipe_facts


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse the command line (``argv`` defaults to ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        'config', type=config_arg, help='a distiller or model config')
    parser.add_argument('--diff', metavar='OTHER',
                        help='print only the facts that differ from OTHER')
    parser.add_argument('--gpus', type=int,
                        help='GPU count for the global batch')
    parser.add_argument('--filter', help='only fact names matching this '
                        'regex (search)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override entries of CONFIG')
    return parser.parse_args(argv)


def _facts(path: str, gpus: Optional[int], options=None) -> dict:
    cfg = load_config(path, options)
    return recipe_facts(cfg, gpus=gpus)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        pattern = re.compile(args.filter) if args.filter else None
    except re.error as err:
        sys.exit(f'print_recipe.py: error: --filter: {err}')
    try:
        facts = _facts(args.config, args.gpus, args.cfg_options)
        other = _facts(args.diff, args.gpus) if args.diff else None
    except FileNotFoundError as err:
        sys.exit(f'print_recipe.py: error: {err}')
    names = sorted(set(facts) | set(other or {}))
    if pattern:
        names = [n for n in names if pattern.search(n)]
    width = max((len(n) for n in names), default=0)
    if other is None:
        for name in names:
            print(f'{name:<{width}}  {facts.get(name)!r}')
        return 0
    missing = object()
    differ = [
        n for n in names
        if facts.get(n, missing) != other.get(n, missing)
    ]
    print(f'{"fact":<{width}}  {args.config}  |  {args.diff}')
    for name in differ:
        print(f'{name:<{width}}  {facts.get(name, "-")!r}  |  '
              f'{other.get(name, "-")!r}')
    if not differ:
        print('(same recipe)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
