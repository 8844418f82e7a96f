"""Draw teacher vs. student attention and feature maps of a distiller, or the
two sides of one of its losses.

    python tools/analysis/visualize_distill.py CONFIG --student-ckpt S.pth
        [--teacher-ckpt [NAME=]T.pth ...] [--images FILE ...] [--num N]
        [--out-dir DIR] [--attn MODEL:PATH,...] [--taps TAP,...]
        [--heads mean|all] [--feature pca|mean] [--resolution native|smooth]
        [--overlay contour|blend|none] [--loss NAME [--seed S]]
        [--cfg-options k=v ...]

Builds the distiller of CONFIG, loads the student from S.pth (a distiller
checkpoint's ``student.*`` weights, or an exported plain student; its
``connectors.*`` too, when present) and each teacher from its config
checkpoint or ``--teacher-ckpt``, runs N images (the files given, else N
images spread over the config's test set) in eval mode and writes PNGs to
DIR. Maps are drawn at their true resolution by default: one flat block per
token or position (``--resolution smooth``: bilinear upsampling instead).

Maps mode (no ``--loss``):

* attention: for each ``MODEL:PATH`` of ``--attn`` (default: the last
  attention module of each model that the ``attn_probs`` selector supports)
  the class token's attention row over the patch tokens (``attn_probs``
  with ``query='cls'``; the prefix tokens' own entries left out), per head or
  averaged over heads, on the patch grid, over the image's outline;
* features: for each tap of ``--taps`` (a tap name of the config's
  ``model.taps``, or ``MODEL:PATH`` for a module's output), a B×C×H×W map or
  tokens on their grid (prefix tokens dropped), reduced over channels to the
  projection on the first principal component of the image's positions
  (sign: largest entry positive) or the channel mean.

In each row, the attention panels share one colour scale (probability, from
0 to the row's largest entry) and the feature panels another (symmetric
around 0, to the row's largest absolute value), each with its colour bar.
``NN_<image>.png`` holds one image (with ``--heads all``, one row of heads
per attention module); ``overview.png`` one row per image, heads averaged.

Loss mode (``--loss NAME``, a term of ``model.losses``): the distiller runs
its own step with only that term active and the values its loss module is
called with are drawn, one row per image (and per pair, for list inputs):
the first two inputs of the loss's ``forward`` (e.g. ``preds``/``targets``,
``logits_s``/``logits_t``) side by side on one scale, their difference, and
for feature maps the squared error per position summed over channels. Maps
(B×C×H×W, square token grids B×N×C) are projected on the principal axis of
the second input (the teacher's side) so that both sides and their
difference are in the same units; ``attn_probs`` taps are drawn as
class-token attention (mean of heads); vectors (B×C: class tokens, logits)
as grouped bars up to 32 entries, else as strips. Other tensor inputs on
the same grid (a mask) get a panel of their own. The loss value for the
drawn images is printed and written in the title; ``loss_<NAME>.png``.
"""
import argparse
import difflib
import os
import os.path as osp
import sys
from typing import List, Optional

import numpy as np
import torch
from mmengine.config import DictAction
from mmengine.dataset import Compose, pseudo_collate

from cls_kd.apis import (
    AttentionMap,
    attention_map,
    build_config_models,
    config_arg,
    feature_map,
    feature_positions,
    forward_model,
    last_attention_modules,
    load_config,
    load_student_weights,
    loss_inputs,
    loss_term,
    principal_axis,
)
from cls_kd.models.distillers.expressions import Call, Source
from cls_kd.models.taps import Tap, TapSet
from cls_kd.registry import DATASETS
from cls_kd.utils import (
    CheckpointError,
    extract_state_dict,
    load_model_weights,
    teacher_specs,
)
from cls_kd.utils.figures import Group, Panel, draw_rows

#: Vectors up to this length are drawn as bars, longer ones as strips.
MAX_BARS = 32
FEATURE_UNIT = dict(pca='projection on PC1 (feature units)',
                    mean='channel mean (feature units)')


def _fail(message: str):
    sys.exit(f'visualize_distill.py: error: {message}')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse the command line (``argv`` defaults to ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', type=config_arg, help='a distiller config')
    parser.add_argument('--student-ckpt', required=True,
                        help='distiller or exported student checkpoint')
    parser.add_argument('--teacher-ckpt', nargs='+', default=[],
                        help='T.pth for the (first) teacher, or NAME=T.pth')
    parser.add_argument('--images', nargs='+',
                        help='image files (default: the config\'s test set)')
    parser.add_argument('--num', type=int, default=4,
                        help='images to draw (the first N of --images)')
    parser.add_argument('--out-dir', default='work_dirs/visualize_distill')
    parser.add_argument('--attn', help='MODEL:PATH,... of attention modules')
    parser.add_argument('--taps', help='TAP or MODEL:PATH,... feature maps')
    parser.add_argument('--heads', choices=['mean', 'all'], default='mean')
    parser.add_argument('--feature', choices=['pca', 'mean'], default='pca',
                        help='channel reduction of feature maps')
    parser.add_argument('--resolution', choices=['native', 'smooth'],
                        default='native',
                        help='native: one block per token (nearest); '
                        'smooth: bilinear upsampling')
    parser.add_argument('--overlay', choices=['contour', 'blend', 'none'],
                        default='contour',
                        help='the image under attention maps: its outline, '
                        'blended (alpha 0.5), or none')
    parser.add_argument('--loss', help='draw the inputs of this loss term '
                        'of model.losses')
    parser.add_argument('--seed', type=int, default=0,
                        help='torch seed before the --loss step (random '
                        'masks of connectors)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


# ---------------------------------------------------------------- maps mode
def _teacher_checkpoints(values: List[str], names: List[str]) -> dict:
    checkpoints = {}
    for value in values:
        name, sep, path = value.partition('=')
        if not sep:
            name, path = names[0] if names else 'teacher', value
        checkpoints[name] = path
    return checkpoints


def _split_target(text: str, models: dict, what: str):
    owner, sep, path = text.strip().partition(':')
    if not sep or owner not in models:
        _fail(f'{what} {text!r}: expected MODEL:PATH with MODEL one of '
              f'{sorted(models)}.')
    return owner, path


def make_taps(models: dict, attn: List[tuple], features: List[str],
              config_taps: dict) -> List[Tap]:
    """The taps to capture; a wrong name or path exits with the close
    matches.

    Args:
        models (dict): ``'student'`` and each teacher, by name.
        attn (list[tuple]): ``(model, path)`` of attention modules, tapped
            with ``attn_probs`` (``query='cls'``) as ``attn MODEL:PATH``.
        features (list[str]): Tap names of ``config_taps`` or
            ``MODEL:PATH`` (the module's output).
        config_taps (dict): The config's ``model.taps``.
    """
    taps = []
    try:
        for owner, path in attn:
            taps.append(Tap(f'attn {owner}:{path}', models[owner], owner,
                            path, selector=dict(type='attn_probs',
                                                query='cls')))
        for item in features:
            if ':' in item:
                owner, path = _split_target(item, models, '--taps')
                taps.append(Tap(item, models[owner], owner, path))
            elif item in config_taps:
                spec = dict(config_taps[item])
                owner = spec.pop('model', 'student')
                taps.append(Tap(item, models[owner], owner, **spec))
            else:
                close = difflib.get_close_matches(item, list(config_taps))
                _fail(f'--taps {item!r} is neither MODEL:PATH nor a tap of '
                      f'the config; closest: {close}, taps: '
                      f'{sorted(config_taps)}.')
    except (KeyError, TypeError, ValueError) as e:
        _fail(e.args[0] if e.args else str(e))
    return taps


def capture(distiller, taps: List[Tap], inputs: torch.Tensor) -> dict:
    """Run each model that ``taps`` read once and return ``tap name ->
    captured value``.

    Args:
        distiller (BaseDistiller): The built distiller.
        taps (list[Tap]): Taps on its student and teachers.
        inputs (Tensor): The preprocessed batch (teachers get their
            re-normalised view of it).
    """
    values = {}
    models = {'student': distiller.student, **dict(distiller.teachers.items())}
    for owner, model in models.items():
        tap_set = TapSet([t for t in taps if t.owner == owner])
        if not len(tap_set):
            continue
        x = inputs if owner == 'student' else \
            distiller.teachers.inputs_for(owner, inputs)
        tap_set.install()
        try:
            with tap_set.recording() as captured:
                forward_model(model, x)
        finally:
            tap_set.remove()
        values.update(captured)
    return values


def compute_maps(distiller, taps: List[Tap], inputs: torch.Tensor,
                 reduce: str = 'pca') -> dict:
    """What is drawn: ``label -> AttentionMap`` for attention taps and
    ``label -> (B, h, w) array`` for feature taps (a multi-module tap gives
    ``label[i]``).

    Args:
        distiller (BaseDistiller): The built distiller.
        taps (list[Tap]): From :func:`make_taps`.
        inputs (Tensor): The preprocessed batch.
        reduce (str): Channel reduction of features, ``'pca'`` or
            ``'mean'`` (see ``feature_map``).
    """
    values = capture(distiller, taps, inputs)
    maps = {}
    for tap in taps:
        if tap.name not in values:
            _fail(f'{tap.owner} never ran {tap.paths}: is it used by the '
                  f'forward?')
        outputs = values[tap.name] if tap.multi else [values[tap.name]]
        for i, (value, prefix) in enumerate(zip(outputs,
                                                tap.num_prefix_tokens)):
            label = f'{tap.name}[{i}]' if tap.multi else tap.name
            if tap.selector_type not in ('output', 'index', 'attn_probs'):
                prefix = 0  # patch_tokens, patch_map: already dropped
            try:
                if tap.selector_type == 'attn_probs':
                    maps[label] = attention_map(value.float(), prefix or 0)
                else:
                    maps[label] = feature_map(value.float(), prefix or 0,
                                              reduce)
            except ValueError as e:
                _fail(f'{label}: {e}')
    return maps


def load_images(cfg, files: Optional[List[str]], num: int, preprocessor):
    """Images through the config's test pipeline: ``(names, RGB uint8
    arrays, preprocessed batch, data samples)``.

    Args:
        cfg (Config): The config (its test, else val, dataloader).
        files (list[str], optional): Image files; the first ``num`` are
            used. None: ``num`` images spread over the test set.
        num (int): How many images.
        preprocessor (nn.Module): The distiller's data preprocessor.
    """
    loader = cfg.get('test_dataloader') or cfg.get('val_dataloader')
    if files:
        pipeline = Compose(loader.dataset.pipeline)
        items = [pipeline(dict(img_path=f)) for f in files[:num]]
        names = [osp.splitext(osp.basename(f))[0] for f in files[:num]]
    else:
        dataset = DATASETS.build(loader.dataset)
        index = np.linspace(0, len(dataset) - 1, min(num, len(dataset)))
        index = sorted(set(int(i) for i in index))
        items = [dataset[i] for i in index]
        names = [f'test{i}' for i in index]
    # LoadImageFromFile reads BGR.
    images = [it['inputs'].flip(0).permute(1, 2, 0).numpy() for it in items]
    batch = preprocessor(pseudo_collate(items), False)
    return names, images, batch['inputs'], batch.get('data_samples')


def _grid(shape) -> str:
    return f'{shape[0]}×{shape[1]}'


def _panels(maps: dict, image, b: int, heads: str,
            reduce: str) -> List[List[Group]]:
    """Rows of groups for image ``b``: one row (heads averaged) or one row
    per attention module (heads side by side) plus one of features
    (reduced over channels by ``reduce``)."""
    attn = {k: v for k, v in maps.items() if isinstance(v, AttentionMap)}
    # Two-line titles 'owner ...' / 'path' keep the panels narrow.
    feats = [
        Panel(f'{k.replace(":", chr(10), 1)}\n{_grid(v[b].shape)} positions',
              v[b], gid=k) for k, v in maps.items() if k not in attn
    ]
    title = {k: k[len('attn '):].split(':', 1) for k in attn}
    input_group = Group([Panel('input', kind='image', image=image)])

    def attn_group(panels):
        return Group(panels, 'class token attention (probability)',
                     'viridis')

    def feat_group():
        return Group(feats, FEATURE_UNIT[reduce], 'RdBu_r',
                     'symmetric')

    if heads == 'mean' or not attn:
        panels = [
            Panel(f'{title[k][0]}, mean of heads\n{title[k][1]}\n'
                  f'{_grid(a.maps.shape[-2:])} tokens', a.maps[b].mean(0),
                  image=image, gid=k) for k, a in attn.items()
        ]
        return [[input_group] + ([attn_group(panels)] if panels else []) +
                ([feat_group()] if feats else [])]
    rows = [[
        input_group,
        attn_group([
            Panel(f'{title[k][0]}, head {h}\n{title[k][1]}\n'
                  f'{_grid(m.shape)} tokens', m, image=image,
                  gid=f'{k} head {h}') for h, m in enumerate(a.maps[b])
        ])
    ] for k, a in attn.items()]
    return rows + ([[feat_group()]] if feats else [])


# ---------------------------------------------------------------- loss mode
def _tap_of(distiller, expr) -> Optional[Tap]:
    if not isinstance(expr, Source):
        return None
    for taps in [distiller.captures.student,
                 *distiller.captures.teachers.values()]:
        for tap in taps:
            if tap.name == expr.name:
                return tap
    return None


def _as_drawable(value, tap: Optional[Tap], what: str):
    """``('attn', (B, h, w))``, ``('map', (B, P, C), (h, w))`` or
    ``('vector', (B, C))`` of one loss input."""
    if not torch.is_tensor(value):
        _fail(f'{what} is a {type(value).__name__}, not a tensor: nothing '
              f'to draw.')
    value = value.detach().float().cpu()
    prefix = 0
    if tap is not None:
        prefix = tap.num_prefix_tokens[0] or 0
        if tap.selector_type == 'attn_probs' and value.dim() == 3:
            return ('attn', attention_map(value, prefix).maps.mean(1))
        if tap.selector_type not in ('output', 'index'):
            prefix = 0
    if value.dim() == 2:
        return ('vector', value.numpy())
    try:
        points, grid = feature_positions(value, prefix)
    except ValueError as e:
        _fail(f'{what}, shape {tuple(value.shape)}: {e}')
    return ('map', points.double(), grid)


def _pair_groups(a, b, names, reduce: str, b_index: int, pair: str,
                 extras: list, image) -> List[Group]:
    """The groups of one row: both sides on one scale, their difference
    and (maps) the squared error per position, then ``extras``; attention
    over ``image``. Sides of different shapes (e.g. attention on two grids,
    resampled by the loss) are drawn without a difference."""
    A, B = names
    kind = a[0]
    same = a[1].shape == b[1].shape
    if kind != b[0] or (kind == 'vector' and not same):
        _fail(f'the two sides of the loss differ ({A}: {kind} '
              f'{tuple(a[1].shape)}, {B}: {b[0]} {tuple(b[1].shape)}): '
              f'nothing to compare entry by entry.')
    if kind == 'vector':
        u, v = a[1][b_index], b[1][b_index]
        n = u.shape[0]
        style = ('bars', 'viridis', 'zero') if n <= MAX_BARS else (
            'strip', 'RdBu_r', 'symmetric')
        return [
            Group([Panel(f'{A} vs {B}{pair}\n{n} entries', np.stack([u, v]),
                         style[0], names=names, gid='sides')], 'value',
                  *style[1:]),
            Group([Panel(f'{A} − {B}{pair}', (u - v)[None], style[0],
                         names=('difference', ), gid='difference')],
                  'difference', *style[1:])
        ]
    if kind == 'attn':
        u, v = a[1][b_index], b[1][b_index]
        grids = [f'{_grid(x.shape)} tokens, mean of heads' for x in (u, v)]
        groups = [
            Group([Panel(f'{A}{pair}\n{grids[0]}', u, image=image, gid=A),
                   Panel(f'{B}{pair}\n{grids[1]}', v, image=image, gid=B)],
                  'class token attention (probability)')
        ]
        if same:
            groups.append(
                Group([Panel(f'{A} − {B}{pair}\n{grids[0]}', u - v,
                             gid='difference')], 'difference (probability)',
                      'RdBu_r', 'symmetric'))
        return groups + extras
    u, v = a[1][b_index:b_index + 1], b[1][b_index:b_index + 1]  # 1, P, C
    grids = [f'{_grid(x[2])} positions, {y.shape[-1]} channels'
             for x, y in ((a, u), (b, v))]
    if not same:  # each on its own principal axis: no difference
        reduced = [feature_map(x.transpose(1, 2).reshape(
            1, -1, *g[2]), 0, reduce)[0] for x, g in ((u, a), (v, b))]
        return [
            Group([Panel(f'{A}{pair}\n{grids[0]}', reduced[0], gid=A),
                   Panel(f'{B}{pair}\n{grids[1]}', reduced[1], gid=B)],
                  FEATURE_UNIT[reduce].replace('PC1', 'own PC1'), 'RdBu_r',
                  'symmetric')
        ] + extras
    if reduce == 'pca':
        centre, direction = principal_axis(v)
        pu, pv = [torch.einsum('bpc,bc->bp', x - centre, direction)
                  for x in (u, v)]
        unit, diff = f'projection on PC1 of {B}', f'difference on PC1 of {B}'
    else:
        pu, pv = u.mean(-1), v.mean(-1)
        unit, diff = 'channel mean', 'difference of channel means'
    h, w = a[2]
    return [
        Group([Panel(f'{A}{pair}\n{grids[0]}', pu.reshape(h, w).numpy(),
                     gid=A),
               Panel(f'{B}{pair}\n{grids[1]}', pv.reshape(h, w).numpy(),
                     gid=B)], unit, 'RdBu_r', 'symmetric'),
        Group([Panel(f'{A} − {B}{pair}', (pu - pv).reshape(h, w).numpy(),
                     gid='difference')], diff, 'RdBu_r', 'symmetric'),
        Group([Panel(f'({A} − {B})²{pair}\nsum over channels',
                     ((u - v)**2).sum(-1).reshape(h, w).numpy(),
                     gid='squared error')], 'squared error', 'magma')
    ] + extras


def loss_rows(distiller, found, images, reduce: str) -> List[List[Group]]:
    """One row per image and pair of the loss inputs ``found``
    (:class:`LossInputs`)."""
    args = list(found.values)
    if len(args) < 2:
        _fail(f'{found.name} reads only {args}: there are no two sides to '
              f'compare.')
    A, B = args[:2]
    inputs = loss_term(distiller, found.name).inputs

    def drawable(arg):
        values = found.values[arg]
        if isinstance(values, (list, tuple)):
            return [
                _as_drawable(v, _tap_of(distiller, e), f'{arg}[{i}]')
                for i, (v, e) in enumerate(zip(values, inputs[arg]))
            ]
        return [_as_drawable(values, _tap_of(distiller, inputs[arg]), arg)]

    sides = drawable(A), drawable(B)
    if len(sides[0]) != len(sides[1]):
        _fail(f'{A} has {len(sides[0])} entries and {B} {len(sides[1])}.')
    grid = sides[0][0][2] if sides[0][0][0] == 'map' else None
    rows = []
    for b, image in enumerate(images):
        notes, extra = [], []
        for arg in args[2:]:
            value = found.values[arg]
            if torch.is_tensor(value) and value.dim() == 2 and grid and \
                    value.shape[1] == grid[0] * grid[1]:
                extra.append(Panel(f'{arg}\n{found.expressions[arg]}',
                                   value[b].float().reshape(grid).numpy(),
                                   gid=arg))
            elif torch.is_tensor(value) and value.dim() == 1:
                notes.append(f'{arg} {value[b].item():g}')
        extras = [Group(extra, ', '.join(p.gid for p in extra),
                        'Greys')] if extra else []
        for i, (a, c) in enumerate(zip(*sides)):
            pair = f' [{i}]' if len(sides[0]) > 1 else ''
            title = '\n'.join(['input', *notes])
            rows.append([Group([Panel(title, kind='image', image=image)])] +
                        _pair_groups(a, c, (A, B), reduce, b, pair, extras,
                                     image))
    return rows


def _load_parts(distiller, path: str, term) -> None:
    """Load the checkpoint's ``connectors.*`` (and ``losses.*``) weights;
    exit when ``term`` reads a connector with weights the checkpoint lacks
    (an exported student)."""
    state = extract_state_dict(
        torch.load(path, map_location='cpu', weights_only=False))
    read = sorted({n.connector for n in term.nodes() if isinstance(n, Call)})
    for part in ('connectors', 'losses'):
        module = getattr(distiller, part)
        if not len(module.state_dict()):
            continue
        if any(k.startswith(f'{part}.') for k in state):
            try:
                load_model_weights(module, path, prefix=f'{part}.')
            except CheckpointError as e:
                _fail(f'--student-ckpt ({part}): {e}')
        elif part == 'connectors' and any(
                len(distiller.connectors[c].state_dict()) for c in read):
            _fail(f'--loss {term.name} reads connectors {read}, whose '
                  f'weights are not in {path} (an exported student?): pass '
                  f'the distiller\'s training checkpoint.')


def _loss_mode(args, cfg, distiller) -> dict:
    try:
        term = loss_term(distiller, args.loss)
    except ValueError as e:
        _fail(f'--loss: {e}')
    _load_parts(distiller, args.student_ckpt, term)
    names, images, inputs, samples = load_images(
        cfg, args.images, args.num, distiller.data_preprocessor)
    unlabelled = [s for s in samples or []
                  if 'gt_label' not in s and 'gt_score' not in s]
    reads = term.sources() & {'labels', 'soft_labels'}
    if unlabelled and reads:
        _fail(f'--loss {args.loss} reads {sorted(reads)}, and the --images '
              f'files have no labels: leave out --images to draw images of '
              f'the config\'s test set.')
    for sample in unlabelled:  # read by the student's supervised loss only
        sample.set_gt_label(0)
    torch.manual_seed(args.seed)
    found = loss_inputs(distiller, args.loss, inputs, samples)
    exprs = ', '.join(f'{a} = {e}' for a, e in found.expressions.items())
    title = (f'{found.name} ({type(found.loss).__name__}) = '
             f'{float(found.value):.4g} on these {len(names)} images (its '
             f'weight included)\n'
             f'{exprs}')
    print(title.replace('\n', '; '), flush=True)
    rows = loss_rows(distiller, found, images, args.feature)
    os.makedirs(args.out_dir, exist_ok=True)
    path = osp.join(args.out_dir, f'{found.name}.png')
    figure = draw_rows(rows, path, title, args.resolution, args.overlay)
    print(f'Wrote {path}', flush=True)
    return dict(loss=found, files=[path], figures={path: figure},
                inputs=inputs)


def main(argv: Optional[List[str]] = None) -> dict:
    """Draw the PNGs. Returns ``files`` (the PNGs written), ``figures``
    (``file -> Figure``) and ``inputs`` (the preprocessed batch), plus
    ``maps`` (:func:`compute_maps`), or with ``--loss`` ``loss`` (the
    :class:`LossInputs` drawn)."""
    args = parse_args(argv)
    if args.loss and (args.attn or args.taps):
        _fail('--loss draws the loss\'s own inputs: leave out --attn and '
              '--taps.')
    print(f'Loading {args.config}', flush=True)
    cfg = load_config(args.config, args.cfg_options)
    specs = teacher_specs(cfg.model)
    checkpoints = _teacher_checkpoints(args.teacher_ckpt, list(specs))
    for name, spec in specs.items():
        if name not in checkpoints and spec.get('checkpoint') is None \
                and not spec.get('random_init'):
            _fail(f'teacher {name!r} has no checkpoint in {args.config}: '
                  f'pass --teacher-ckpt {name}=T.pth.')
    try:
        distiller, models = build_config_models(cfg, checkpoints)
    except ValueError as e:
        _fail(str(e))
    if not hasattr(distiller, 'teachers'):
        _fail(f'{args.config} is not a distiller config.')
    try:
        count = load_student_weights(distiller.student, args.student_ckpt)
    except CheckpointError as e:
        _fail(f'--student-ckpt: {e}')
    print(f'Student: {count} tensors from {args.student_ckpt}; teachers: '
          f'{sorted(distiller.teachers)}', flush=True)
    if args.loss:
        return _loss_mode(args, cfg, distiller)
    if args.attn:
        attn = [_split_target(t, models, '--attn')
                for t in args.attn.split(',')]
    else:
        attn = last_attention_modules(models)
        print(f'Attention modules (default: the last of each model): '
              f'{[f"{o}:{p}" for o, p in attn]}', flush=True)
    features = args.taps.split(',') if args.taps else []
    taps = make_taps(models, attn, features, dict(cfg.model.get('taps', {})))
    if not taps:
        _fail('nothing to draw: no model has an attention module that '
              'attn_probs supports; name feature maps with --taps.')
    names, images, inputs, _ = load_images(cfg, args.images, args.num,
                                           distiller.data_preprocessor)
    print(f'{len(names)} images, batch {tuple(inputs.shape)}', flush=True)
    maps = compute_maps(distiller, taps, inputs, args.feature)
    os.makedirs(args.out_dir, exist_ok=True)
    files, figures = [], {}
    for b, (name, image) in enumerate(zip(names, images)):
        files.append(osp.join(args.out_dir, f'{b:02d}_{name}.png'))
        figures[files[-1]] = draw_rows(
            _panels(maps, image, b, args.heads, args.feature), files[-1],
            resolution=args.resolution, overlay=args.overlay)
        print(f'Wrote {files[-1]}', flush=True)
    files.append(osp.join(args.out_dir, 'overview.png'))
    figures[files[-1]] = draw_rows(
        [_panels(maps, image, b, 'mean', args.feature)[0]
         for b, image in enumerate(images)],
        files[-1], resolution=args.resolution, overlay=args.overlay)
    print(f'Wrote {files[-1]}', flush=True)
    return dict(maps=maps, files=files, figures=figures, inputs=inputs)


if __name__ == '__main__':
    main()
