"""Export the student of a distiller checkpoint as a plain mmpretrain one.

    python tools/model_converters/extract_student.py IN.pth OUT.pth
        [--ema | --raw] [--bare]

The output holds only the student's weights (no connectors, no optimizer)
under ``state_dict`` and loads with ``tools/test.py <student config> OUT``
or mmpretrain's own tools.

Which keys it writes: the student's, with the distiller's ``student.``
removed. A student that is a whole model (``ImageClassifier``) keeps its
``backbone.``/``neck.``/``head.`` keys; a ``TimmClassifier`` is written
without ``model.``, as its own checkpoints are (it adds ``model.`` back when
loading). A bare backbone (the label-free
distiller's students, e.g. AttnDistill's) is written under ``backbone.``,
the layout of an mmpretrain ``ImageClassifier`` with that backbone, so that
the plain backbone configs load it (e.g.
``configs/attndistill/knn_vit-small-p16_in1k.py`` for a k-NN test, or a
linear probe whose backbone ``init_cfg`` reads ``prefix='backbone.'``);
``--bare`` writes the backbone's keys as trained instead.

By default the exported weights are the ones validation evaluated. For a run
with mmengine's ``EMAHook`` these are the EMA weights: when it saves, the hook
swaps the two copies, so that a checkpoint's ``state_dict`` holds the EMA
weights and its ``ema_state_dict`` the raw (online) ones, under
``module.<key>``. ``--ema`` exports the EMA weights and refuses a checkpoint
without them; ``--raw`` exports the raw ones.
"""
import argparse
import os
import os.path as osp
from typing import Optional

import torch
from mmengine.config import Config

from cls_kd.utils import extract_state_dict


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='distiller checkpoint')
    parser.add_argument('dst', help='where to write the student checkpoint')
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        '--ema',
        action='store_true',
        help='export the EMA student (needs an EMAHook checkpoint)')
    which.add_argument(
        '--raw',
        action='store_true',
        help='export the raw (non-EMA) student of an EMAHook checkpoint')
    parser.add_argument(
        '--bare',
        action='store_true',
        help='write a bare backbone student\'s keys as trained (default: '
        'under backbone., as an ImageClassifier holds them)')
    return parser.parse_args(argv)


def _raw_state_dict(checkpoint: dict) -> dict:
    """The online weights of an EMAHook checkpoint, keyed as ``state_dict``
    (the EMA copy's ``module.`` prefix removed, its ``steps`` counter
    dropped)."""
    return {
        key[len('module.'):]: value
        for key, value in checkpoint['ema_state_dict'].items()
        if key.startswith('module.')
    }


# Top-level keys of an mmpretrain classifier's state dict.
_MODEL_PARTS = ('backbone.', 'neck.', 'head.', 'data_preprocessor.')


def _student_type(checkpoint: dict) -> Optional[type]:
    """The class of the student, from the config that mmengine saves in a
    training checkpoint's ``meta['cfg']`` (None when it cannot be read)."""
    text = (checkpoint.get('meta') or {}).get('cfg')
    if not isinstance(text, str):
        return None
    try:
        import cls_kd
        from cls_kd.registry import MODELS
        cls_kd.register_all_modules(init_default_scope=False)
        student = Config.fromstring(text, '.py').model.get('student') or {}
        kind = student.get('type')
        return MODELS.get(kind) if isinstance(kind, str) else kind
    except Exception:  # an unreadable config: fall back to the keys
        return None


def is_bare_backbone(kind: Optional[type], state: dict) -> bool:
    """Whether the student is a bare backbone, not a classifier: by its
    class ``kind`` where the checkpoint names it (:func:`_student_type`; a
    timm classifier has no ``backbone.`` keys either), else by its keys
    (none under ``backbone.``, ``neck.`` or ``head.``)."""
    from mmpretrain.models import BaseClassifier
    if isinstance(kind, type):
        return not issubclass(kind, BaseClassifier)
    return bool(state) and not any(k.startswith(_MODEL_PARTS) for k in state)


def extract_student(src: str,
                    dst: str,
                    ema: bool = False,
                    raw: bool = False,
                    bare: bool = False) -> int:
    """Write the student checkpoint.

    Args:
        src (str): A training checkpoint of a distiller.
        dst (str): Where to write the plain student checkpoint.
        ema (bool): Require and export the EMA weights (what validation
            evaluated in an EMAHook run). Defaults to False: export
            ``state_dict`` as saved, which is the same for an EMAHook run.
        raw (bool): Export the raw weights of an EMAHook run instead.
            Defaults to False.
        bare (bool): Write a bare backbone student's keys as trained.
            Defaults to False: under ``backbone.`` (see the module's
            docstring).

    Returns:
        int: The number of tensors written.
    """
    if ema and raw:
        raise ValueError('Choose --ema or --raw, not both.')
    # Our own training checkpoint (mmengine meta inside): trusted.
    checkpoint = torch.load(src, map_location='cpu', weights_only=False)
    has_ema = 'ema_state_dict' in checkpoint
    if ema and not has_ema:
        raise KeyError(f'{src} has no ema_state_dict (trained without '
                       f'EMAHook?).')
    if raw and has_ema:
        weights = {'state_dict': _raw_state_dict(checkpoint)}
    else:
        weights = checkpoint
        if has_ema and not ema:
            print(f'{src} was trained with EMAHook: exporting the EMA '
                  f'weights (what validation evaluated); --raw exports the '
                  f'raw ones.')
    state = extract_state_dict(weights, prefix='student.')
    meta = dict(checkpoint.get('meta', {}))
    meta = {k: v for k, v in meta.items() if k in ('epoch', 'iter', 'seed')}
    kind = _student_type(checkpoint)
    if isinstance(kind, type) and hasattr(kind, '_add_state_dict_prefix'):
        # A TimmClassifier (HuggingFaceClassifier) student: its own
        # checkpoints have no ``model.`` (its loading hook adds it).
        state = {
            k[len('model.'):] if k.startswith('model.') else k: v
            for k, v in state.items()
        }
        print(f'The student is a {kind.__name__}: its keys are written '
              f'without model., as its own checkpoints hold them.')
    elif is_bare_backbone(kind, state):
        if bare:
            print('The student is a bare backbone: its keys are written as '
                  'trained (--bare).')
            meta['keys'] = 'bare backbone'
        else:
            state = {f'backbone.{k}': v for k, v in state.items()}
            print('The student is a bare backbone: its keys are written '
                  'under backbone., as an ImageClassifier holds them '
                  '(--bare writes them as trained).')
            meta['keys'] = 'backbone. (ImageClassifier)'
    meta['distilled_from'] = osp.abspath(src)
    meta['weights'] = 'raw' if raw or not has_ema else 'ema'
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    torch.save({'state_dict': state, 'meta': meta}, dst)
    return len(state)


def main(argv=None):
    args = parse_args(argv)
    count = extract_student(args.src, args.dst, args.ema, args.raw,
                            args.bare)
    print(f'Wrote {count} student tensors to {args.dst}')


if __name__ == '__main__':
    main()
