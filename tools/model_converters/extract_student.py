"""Export the student of a distiller checkpoint as a plain mmpretrain one.

    python tools/model_converters/extract_student.py IN.pth OUT.pth [--ema]

The output holds only the student's weights (no connectors, no optimizer)
under ``state_dict`` and loads with ``tools/test.py <student config> OUT``
or mmpretrain's own tools. ``--ema`` exports the EMA weights instead.
"""
import argparse
import os
import os.path as osp

import torch

from cls_kd.utils import extract_state_dict


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='distiller checkpoint')
    parser.add_argument('dst', help='where to write the student checkpoint')
    parser.add_argument(
        '--ema',
        action='store_true',
        help='export the EMA student (needs an EMAHook checkpoint)')
    return parser.parse_args(argv)


def extract_student(src: str, dst: str, ema: bool = False) -> int:
    """Write the student checkpoint; returns the number of tensors."""
    # Our own training checkpoint (mmengine meta inside): trusted.
    checkpoint = torch.load(src, map_location='cpu', weights_only=False)
    if ema:
        if 'ema_state_dict' not in checkpoint:
            raise KeyError(f'{src} has no ema_state_dict (trained without '
                           f'EMAHook?).')
        # EMA keys are 'module.<distiller key>' next to 'steps'.
        checkpoint = {'state_dict': checkpoint['ema_state_dict']}
    state = extract_state_dict(checkpoint, prefix='student.')
    meta = dict(checkpoint.get('meta', {})) if not ema else {}
    meta = {k: v for k, v in meta.items() if k in ('epoch', 'iter', 'seed')}
    meta['distilled_from'] = osp.abspath(src)
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    torch.save({'state_dict': state, 'meta': meta}, dst)
    return len(state)


def main(argv=None):
    args = parse_args(argv)
    count = extract_student(args.src, args.dst, args.ema)
    print(f'Wrote {count} student tensors to {args.dst}')


if __name__ == '__main__':
    main()
