"""How much each loss term weighs in a distiller's training step: its value
and the gradient it sends into the student's parameters.

    python tools/analysis/loss_shares.py CONFIG [CHECKPOINT ...]
        [--batches N] [--seed S] [--groups PREFIX ...] [--out FILE.json]
        [--cfg-options key=value ...]

For every checkpoint (a training checkpoint of the config's distiller; none:
the student and connectors as initialised with ``--seed``), ``N`` batches
of the config's training loader (its augmentation, in training mode) go
through the distiller's training loss. For each term that enters the total
(the keys with ``loss`` in their name, as mmengine sums them), with ``g_k``
its gradient w.r.t. the student's trainable parameters and ``G = sum g_k``
the gradient of the total:

* ``value``: the term as it enters the total (weighted);
* ``grad``: ``||g_k||``;
* ``norm share``: ``||g_k|| / sum_j ||g_j||``;
* ``proj share``: ``<g_k, G> / ||G||^2``, the part of the step's gradient
  the term accounts for along the total's direction (the shares of all
  terms add up to 1; a negative one pulls against the total);
* ``cos ref``: cosine between ``g_k`` and the reference term's gradient
  (``--reference``, default ``loss_cls``, the supervised cross-entropy);
* per group (``--groups``, default the student's modules two levels deep,
  e.g. ``backbone.layer3``): ``||g_k||`` restricted to that group's
  parameters.

Numbers are means over the batches. Connectors (projectors) are trained
too but are not counted: only what reaches the student is.

Example (the digits ScaleKD CNN student after training)::

    python tools/analysis/loss_shares.py \\
        configs/scalekd/scalekd_vit-4x64-p8_resnet18-c4_1xb64_digits.py \\
        work_dirs/scalekd/epoch_15.pth --batches 4 --cfg-options \\
        model.teacher.checkpoint=work_dirs/teacher/epoch_40.pth
"""
import argparse
import copy
import json
import logging
import math
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
from mmengine.config import DictAction
from mmengine.logging import MMLogger
from mmengine.runner import Runner, load_checkpoint, set_random_seed

from cls_kd.apis import config_arg, load_config
from cls_kd.registry import MODELS

__all__ = ['term_gradients', 'gradient_shares', 'default_groups',
           'analyse_model', 'main']


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', type=config_arg, help='a distiller config')
    parser.add_argument(
        'checkpoints', nargs='*',
        help='training checkpoints of that distiller (none: initial '
        'weights)')
    parser.add_argument('--batches', type=int, default=4,
                        help='training batches per checkpoint')
    parser.add_argument('--seed', type=int, default=0,
                        help='seed of the initial weights and the batches')
    parser.add_argument(
        '--reference', default='loss_cls',
        help='term whose gradient the others are compared with')
    parser.add_argument(
        '--groups', nargs='+',
        help='parameter name prefixes of the student to report apart '
        '(default: its modules two levels deep)')
    parser.add_argument('--out', help='write the numbers to this JSON file')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config entries')
    return parser.parse_args(argv)


def term_gradients(losses: Dict[str, torch.Tensor],
                   params: 'OrderedDict[str, torch.Tensor]'
                   ) -> Dict[str, List[torch.Tensor]]:
    """The gradient of each summed term w.r.t. ``params``.

    Args:
        losses (dict): A training step's losses; the keys with ``loss`` in
            their name are the terms mmengine adds into the total (a list
            of tensors counts as their sum).
        params (OrderedDict): ``name -> parameter``.

    Returns:
        dict: ``term -> [gradient per parameter]`` (zeros for parameters
        the term does not reach).
    """
    tensors = list(params.values())
    grads = {}
    for name, value in losses.items():
        if 'loss' not in name:
            continue
        if isinstance(value, (list, tuple)):
            value = sum(value)
        if not value.requires_grad:
            grads[name] = [torch.zeros_like(p) for p in tensors]
            continue
        found = torch.autograd.grad(value, tensors, retain_graph=True,
                                    allow_unused=True)
        grads[name] = [
            torch.zeros_like(p) if g is None else g.detach()
            for p, g in zip(tensors, found)
        ]
    return grads


def _dot(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> float:
    return float(sum((x.double() * y.double()).sum() for x, y in zip(a, b)))


def gradient_shares(grads: Dict[str, List[torch.Tensor]],
                    names: Sequence[str],
                    reference: Optional[str] = 'loss_cls',
                    groups: Sequence[str] = ()) -> Dict[str, dict]:
    """Norms and shares of per-term gradients (see the module docstring).

    Args:
        grads (dict): ``term -> [gradient per parameter]``
            (:func:`term_gradients`).
        names (list[str]): The parameters' names, in the same order.
        reference (str, optional): The term for ``cos_ref``.
        groups (list[str]): Name prefixes; ``groups[prefix]`` of each term
            is its gradient norm over the parameters under that prefix.

    Returns:
        dict: ``term -> dict(grad, norm_share, proj_share, cos_ref,
        groups)``; ``cos_ref`` is None when the reference is absent or a
        gradient is zero.
    """
    total = [sum(gs) for gs in zip(*grads.values())]
    total_sq = _dot(total, total)
    norms = {k: math.sqrt(_dot(g, g)) for k, g in grads.items()}
    norm_sum = sum(norms.values())
    ref = grads.get(reference) if reference else None
    out = {}
    for term, g in grads.items():
        cos = None
        if ref is not None and norms[term] > 0 and norms[reference] > 0:
            cos = _dot(g, ref) / (norms[term] * norms[reference])
        per_group = {}
        for prefix in groups:
            part = [x for n, x in zip(names, g)
                    if n == prefix or n.startswith(prefix + '.')]
            per_group[prefix] = math.sqrt(_dot(part, part))
        out[term] = dict(
            grad=norms[term],
            norm_share=norms[term] / norm_sum if norm_sum > 0 else 0.0,
            proj_share=_dot(g, total) / total_sq if total_sq > 0 else 0.0,
            cos_ref=cos,
            groups=per_group)
    return out


def default_groups(student: nn.Module, depth: int = 2) -> List[str]:
    """Prefixes of the student's modules ``depth`` levels deep that own
    trainable parameters (shallower ones where the tree is shallower), in
    the order of its parameters."""
    groups = []
    for name, param in student.named_parameters():
        if not param.requires_grad:
            continue
        prefix = '.'.join(name.split('.')[:depth])
        if prefix == name:  # a parameter right under a shallow module
            prefix = '.'.join(name.split('.')[:-1]) or name
        if prefix not in groups:
            groups.append(prefix)
    return groups


def _mean(rows: List[dict]) -> dict:
    """Element-wise mean of nested dicts of numbers (None stays None)."""
    out = {}
    for key, value in rows[0].items():
        if isinstance(value, dict):
            out[key] = _mean([r[key] for r in rows])
        elif value is None or any(r[key] is None for r in rows):
            out[key] = None
        else:
            out[key] = sum(r[key] for r in rows) / len(rows)
    return out


def analyse_model(model, batches, reference: str = 'loss_cls',
                  groups: Optional[Sequence[str]] = None) -> Dict[str, dict]:
    """Per-term values, gradient norms and shares of a distiller, as means
    over ``batches`` (data loader outputs, before preprocessing).

    Returns:
        dict: ``term -> dict(value, grad, norm_share, proj_share, cos_ref,
        groups)``.
    """
    model.train()
    params = OrderedDict(
        (n, p) for n, p in model.student.named_parameters()
        if p.requires_grad)
    groups = list(groups) if groups else default_groups(model.student)
    rows = []
    for data in batches:
        data = model.data_preprocessor(copy.copy(data), True)
        losses = model(**data, mode='loss')
        grads = term_gradients(losses, params)
        shares = gradient_shares(grads, list(params), reference, groups)
        for term in shares:
            value = losses[term]
            if isinstance(value, (list, tuple)):
                value = sum(value)
            shares[term] = dict(value=float(value.detach()), **shares[term])
        rows.append(shares)
        model.zero_grad(set_to_none=True)
    return _mean(rows)


def format_table(title: str, shares: Dict[str, dict]) -> str:
    groups = list(next(iter(shares.values()))['groups'])
    head = ['term', 'value', 'grad', 'norm share', 'proj share', 'cos ref',
            *groups]
    lines = [f'== {title}', ' | '.join(head)]
    for term, row in shares.items():
        cos = '-' if row['cos_ref'] is None else f"{row['cos_ref']:+.3f}"
        cells = [term, f"{row['value']:.4f}", f"{row['grad']:.4f}",
                 f"{row['norm_share']:.3f}", f"{row['proj_share']:+.3f}",
                 cos, *(f"{row['groups'][g]:.4f}" for g in groups)]
        lines.append(' | '.join(cells))
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> Dict[str, Dict[str, dict]]:
    """Print one table per checkpoint; return ``checkpoint -> shares``."""
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    set_random_seed(args.seed)  # initial weights and augmentation
    model_cfg = copy.deepcopy(cfg.model)
    if model_cfg.get('data_preprocessor') is None:
        model_cfg['data_preprocessor'] = copy.deepcopy(
            cfg.get('data_preprocessor'))
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # no distiller summary
    try:
        model = MODELS.build(model_cfg)
    finally:
        logger.setLevel(level)
    loader_cfg = copy.deepcopy(cfg.train_dataloader)
    loader_cfg.update(num_workers=0, persistent_workers=False)
    loader = Runner.build_dataloader(loader_cfg, seed=args.seed)
    batches = []
    for data in loader:
        if len(batches) == args.batches:
            break
        batches.append(data)
    results = {}
    for checkpoint in args.checkpoints or [None]:
        progress = (0, 0)
        if checkpoint is not None:
            meta = load_checkpoint(model, checkpoint, map_location='cpu',
                                   logger='silent').get('meta', {})
            progress = (meta.get('epoch', 0), meta.get('iter', 0))
        if hasattr(model, 'set_progress'):  # scheduled terms, stages
            model.set_progress(*progress)
        shares = analyse_model(model, batches, args.reference, args.groups)
        results[checkpoint or 'init'] = shares
        print(format_table(checkpoint or f'initial weights (seed '
                           f'{args.seed})', shares), flush=True)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == '__main__':
    main()
