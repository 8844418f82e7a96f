"""Print the tappable modules of a config's models with their output shapes.

    python tools/analysis/print_taps.py CONFIG [--model student|teacher|NAME]
        [--depth K] [--filter REGEX] [--input-size S] [--cfg-options k=v ...]

For a distiller config, the student and every teacher (teachers with random
weights: only shapes are printed); for any other model config (e.g. an
mmpretrain classifier), its model, named ``model``. One dummy batch of one
image at the config's input size (the distiller's ``input_size``, the patch
embedding's, else the test pipeline's) runs through each model with forward
hooks on every submodule; each line gives a module's dotted path (what a
tap's ``path`` takes), its class and its output shape (``1x17x64``; tuples
in parentheses; ``x2 calls`` for modules run more than once; ``not run`` for
modules the forward skips).

Example::

    python tools/analysis/print_taps.py \\
        configs/kd/kd_resnet18-c16_vit-t4-p8_1xb64_digits.py \\
        --model student --filter 'layers\\.0'
"""
import argparse
import logging
import re
import sys
from typing import Dict, List, Optional

import torch
import torch.nn as nn
from mmengine.config import DictAction
from mmengine.logging import MMLogger

from cls_kd.apis import (
    build_config_models,
    config_arg,
    config_input_size,
    forward_model,
    load_config,
)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse the command line (``argv`` defaults to ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        'config', type=config_arg, help='a distiller or model config')
    parser.add_argument(
        '--model',
        help='which model: student, teacher (or a teacher\'s name); '
        'defaults to all of them')
    parser.add_argument(
        '--depth',
        type=int,
        help='only modules at most K levels deep (backbone.layers.0 is 3)')
    parser.add_argument(
        '--filter', help='only module paths matching this regex (search)')
    parser.add_argument(
        '--input-size', type=int, help='dummy image size instead of the '
        'config\'s')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config entries')
    return parser.parse_args(argv)


def describe(value) -> str:
    """Short shape text of a module output: tensors as ``1x17x64``, tuples
    as ``(a, b)``, lists as ``[a, b]``, dicts as ``{key: a}``."""
    if torch.is_tensor(value):
        return 'x'.join(str(s) for s in value.shape) or 'scalar'
    if isinstance(value, tuple):
        return '(' + ', '.join(describe(v) for v in value) + ')'
    if isinstance(value, list):
        return '[' + ', '.join(describe(v) for v in value) + ']'
    if isinstance(value, dict):
        return '{' + ', '.join(f'{k}: {describe(v)}'
                               for k, v in value.items()) + '}'
    if value is None or isinstance(value, (bool, int, float, str)):
        return repr(value)
    return type(value).__name__


def record_outputs(model: nn.Module, inputs: torch.Tensor) -> Dict[str, list]:
    """``module path -> [output description per call]`` of one forward."""
    calls: Dict[str, list] = {}
    handles = []
    for name, module in model.named_modules():
        if name:
            handles.append(module.register_forward_hook(
                lambda m, args, out, name=name: calls.setdefault(
                    name, []).append(describe(out))))
    try:
        forward_model(model, inputs)
    finally:
        for handle in handles:
            handle.remove()
    return calls


def tap_lines(model: nn.Module,
              inputs: torch.Tensor,
              depth: Optional[int] = None,
              pattern: Optional[str] = None) -> List[str]:
    """One line per selected submodule: path, class and output shape.

    Args:
        model (nn.Module): The model, in eval mode.
        inputs (Tensor): The dummy batch, (1, 3, H, W).
        depth (int, optional): Keep paths of at most this many parts.
        pattern (str, optional): Keep paths matching this regex.
    """
    calls = record_outputs(model, inputs)
    rows = []
    for name, module in model.named_modules():
        if not name or (depth is not None and name.count('.') >= depth):
            continue
        if pattern is not None and not re.search(pattern, name):
            continue
        outputs = calls.get(name)
        if outputs is None:
            shape = 'not run'
        else:
            shape = outputs[0]
            if len(outputs) > 1:
                shape += f'  x{len(outputs)} calls'
        rows.append((name, type(module).__name__, shape))
    if not rows:
        return []
    w_name = max(len(r[0]) for r in rows)
    w_cls = max(len(r[1]) for r in rows)
    return [f'{n:<{w_name}}  {c:<{w_cls}}  {s}' for n, c, s in rows]


def main(argv: Optional[List[str]] = None) -> Dict[str, List[str]]:
    """Print the tables; returns them, ``model name -> lines``."""
    args = parse_args(argv)
    if args.filter is not None:
        try:
            re.compile(args.filter)
        except re.error as e:
            sys.exit(f'print_taps.py: error: bad --filter {args.filter!r}: '
                     f'{e}')
    cfg = load_config(args.config, args.cfg_options)
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # no distiller summary before tables
    try:
        model, models = build_config_models(cfg, random_teachers=True)
    finally:
        logger.setLevel(level)
    if args.model is not None:
        if args.model not in models:
            sys.exit(f'print_taps.py: error: no model {args.model!r} in '
                     f'{args.config}; models: {sorted(models)}.')
        models = {args.model: models[args.model]}
    size = (args.input_size, ) * 2 if args.input_size else config_input_size(
        cfg, model)
    tables = {}
    for name, module in models.items():
        inputs = torch.randn(1, 3, *size)
        if hasattr(model, 'teachers') and name in model.teachers:
            inputs = model.teachers.inputs_for(name, inputs)
        print(f'== {name} ({type(module).__name__}), input '
              f'{describe(inputs)}', flush=True)
        tables[name] = tap_lines(module, inputs, args.depth, args.filter)
        print('\n'.join(tables[name]) or '(no module matches)', flush=True)
    return tables


if __name__ == '__main__':
    main()
