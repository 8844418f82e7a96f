"""Print what a distiller config builds: teachers (config, checkpoint, keys
loaded, parameters), taps with their dry-run shapes, connectors, loss terms
(inputs, weights, schedules) and stages -- the block that training logs
when it builds the model.

    python tools/analysis/distiller_summary.py CONFIG [--random-teachers]
        [--cfg-options key=value ...]

Example::

    python tools/analysis/distiller_summary.py \\
        configs/kd/kd_resnet18-c16_vit-t4-p8_1xb64_digits.py --random-teachers
"""
import argparse
import copy
import logging
from typing import List, Optional

from mmengine.config import DictAction
from mmengine.logging import MMLogger

from cls_kd.apis import config_arg, load_config
from cls_kd.models.distillers import BaseDistiller
from cls_kd.models.distillers.summary import distiller_summary
from cls_kd.registry import MODELS
from cls_kd.utils import teacher_specs


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Print the summary of a cls_kd distiller config.')
    parser.add_argument(
        'config', type=config_arg, help='distiller config file path')
    parser.add_argument(
        '--random-teachers',
        action='store_true',
        help='build the teachers with random weights (no checkpoint '
        'needed; the keys-loaded line then says RANDOM)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> str:
    """Build the config's distiller; print and return its summary."""
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    if args.random_teachers:
        for spec in teacher_specs(model_cfg).values():
            spec.update(checkpoint=None, random_init=True)
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # building logs the same summary
    try:
        model = MODELS.build(model_cfg)
    finally:
        logger.setLevel(level)
    if not isinstance(model, BaseDistiller):
        raise SystemExit(f'distiller_summary.py: error: {args.config} builds '
                         f'a {type(model).__name__}, not a distiller.')
    text = distiller_summary(model)
    print(text)
    return text


if __name__ == '__main__':
    main()
