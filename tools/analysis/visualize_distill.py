"""Draw teacher vs. student attention and feature maps of a distiller.

    python tools/analysis/visualize_distill.py CONFIG --student-ckpt S.pth
        [--teacher-ckpt [NAME=]T.pth ...] [--images FILE ...] [--num N]
        [--out-dir DIR] [--attn MODEL:PATH,...] [--taps TAP,...]
        [--heads mean|all] [--feature pca|mean] [--cfg-options k=v ...]

Builds the distiller of CONFIG, loads the student from S.pth (a distiller
checkpoint's ``student.*`` weights, or an exported plain student) and each
teacher from its config checkpoint or ``--teacher-ckpt``, runs N images (the
files given, else N images spread over the config's test set) through the
student and the teachers with cls_kd taps (no backbone is edited), and
writes PNGs to DIR:

* attention: for each ``MODEL:PATH`` of ``--attn`` (default: the last
  attention module of each model that the ``attn_probs`` selector supports)
  the class token's attention row over the patch tokens (``attn_probs``
  with ``query='cls'``; the prefix tokens' own entries left out), per head or
  averaged over heads, on the patch grid, upsampled (bilinear) and overlaid
  on the image; each panel is scaled to its own maximum;
* features: for each tap of ``--taps`` (a tap name of the config's
  ``model.taps``, or ``MODEL:PATH`` for a module's output), a B×C×H×W map or
  tokens on their grid (prefix tokens dropped), reduced over channels to the
  first principal component of the image's positions (sign: largest entry
  positive) or the channel mean.

``NN_<image>.png`` holds one image (with ``--heads all``, one row of heads
per attention module); ``overview.png`` one row per image, heads averaged.
"""
import argparse
import difflib
import os
import os.path as osp
import sys
from typing import List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from mmengine.config import DictAction
from mmengine.dataset import Compose, pseudo_collate

from cls_kd.models.taps import Tap, TapSet
from cls_kd.registry import DATASETS
from cls_kd.utils import CheckpointError
from cls_kd.utils.config_paths import config_arg
from cls_kd.utils.inspection import (
    AttentionMap,
    attention_map,
    build_config_models,
    feature_map,
    forward_model,
    last_attention_modules,
    load_config,
    load_student_weights,
    teacher_specs,
)


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
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


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
        tap_set.enable()
        try:
            forward_model(model, x)
        finally:
            values.update(tap_set.collect())
            tap_set.remove()
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
    arrays, preprocessed batch)``.

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
    batch = preprocessor(pseudo_collate(items), False)['inputs']
    return names, images, batch


def _show(ax, image, overlay=None, title=''):
    ax.imshow(image)
    if overlay is not None:
        overlay = torch.as_tensor(overlay)[None, None].float()
        big = F.interpolate(overlay, size=image.shape[:2], mode='bilinear',
                            align_corners=False)[0, 0].numpy()
        ax.imshow(big / max(big.max(), 1e-12), cmap='jet', alpha=0.5,
                  vmin=0, vmax=1)
    ax.set_title(title, fontsize=7)
    ax.axis('off')


def _grid_figure(rows: List[list], path: str):
    """Save panels ``(kind, image, data, title)`` laid out in rows."""
    cols = max(len(r) for r in rows)
    fig = Figure(figsize=(1.7 * cols, 1.9 * len(rows)))
    axes = fig.subplots(len(rows), cols, squeeze=False)
    for ax_row, row in zip(axes, rows):
        for ax in ax_row[len(row):]:
            ax.axis('off')
        for ax, (kind, image, data, title) in zip(ax_row, row):
            if kind == 'feature':
                ax.imshow(data, cmap='viridis', interpolation='nearest')
                ax.set_title(title, fontsize=7)
                ax.axis('off')
            else:
                _show(ax, image, data, title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _panels(maps: dict, image, b: int, heads: str) -> List[list]:
    """Rows of panels for image ``b``: one row (heads averaged) or one row
    per attention module (heads side by side) plus one of features."""
    attn = {k: v for k, v in maps.items() if isinstance(v, AttentionMap)}
    # Two-line titles 'owner ...' / 'path' keep the panels narrow.
    feats = [('feature', None, v[b], k.replace(':', '\n', 1))
             for k, v in maps.items() if k not in attn]
    title = {k: k[len('attn '):].split(':', 1) for k in attn}
    if heads == 'mean' or not attn:
        return [[('image', image, None, 'input')] + [
            ('attn', image, a.maps[b].mean(0),
             f'{title[k][0]}, mean of heads\n{title[k][1]}')
            for k, a in attn.items()
        ] + feats]
    rows = [[('image', image, None, 'input')] +
            [('attn', image, m, f'{title[k][0]}, head {h}\n{title[k][1]}')
             for h, m in enumerate(a.maps[b])] for k, a in attn.items()]
    return rows + ([feats] if feats else [])


def main(argv: Optional[List[str]] = None) -> dict:
    """Draw the PNGs; returns ``maps`` (:func:`compute_maps`), ``files``
    (the PNGs written) and ``inputs`` (the preprocessed batch)."""
    args = parse_args(argv)
    print(f'Loading {args.config}', flush=True)
    cfg = load_config(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
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
    names, images, inputs = load_images(cfg, args.images, args.num,
                                        distiller.data_preprocessor)
    print(f'{len(names)} images, batch {tuple(inputs.shape)}', flush=True)
    maps = compute_maps(distiller, taps, inputs, args.feature)
    os.makedirs(args.out_dir, exist_ok=True)
    files = []
    for b, (name, image) in enumerate(zip(names, images)):
        files.append(osp.join(args.out_dir, f'{b:02d}_{name}.png'))
        _grid_figure(_panels(maps, image, b, args.heads), files[-1])
        print(f'Wrote {files[-1]}', flush=True)
    files.append(osp.join(args.out_dir, 'overview.png'))
    _grid_figure([_panels(maps, image, b, 'mean')[0]
                  for b, image in enumerate(images)], files[-1])
    print(f'Wrote {files[-1]}', flush=True)
    return dict(maps=maps, files=files, inputs=inputs)


if __name__ == '__main__':
    main()
