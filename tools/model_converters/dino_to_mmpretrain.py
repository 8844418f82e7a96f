"""Convert a DINO or Mugs ViT checkpoint to mmpretrain VisionTransformer keys.

    python tools/model_converters/dino_to_mmpretrain.py SRC DST
        [--model teacher|student] [--prefix backbone.] [--num-heads N]
        [--trusted]

DINO (Caron et al., "Emerging Properties in Self-Supervised Vision
Transformers", ICCV 2021) and Mugs (Zhou et al., "Mugs: A Multi-Granular
Self-Supervised Learning Framework", 2022) share one ViT backbone layout:
``cls_token``, ``pos_embed``, ``patch_embed.proj``, ``blocks.{i}.{norm1,
attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}``, ``norm``; pre-norm blocks,
LayerNorm eps 1e-6, qkv with bias, exact GELU, no layer scale, no norm
before the blocks. It maps one to one onto mmpretrain's ``VisionTransformer``
built with ``qkv_bias=True``, ``norm_cfg=dict(type='LN', eps=1e-6)`` (its
default), ``final_norm=True`` and ``pre_norm=False``.

Accepted inputs (layouts read from the public sources, facebookresearch/dino
and sail-sg/mugs):

- a backbone-only file, e.g. DINO's ``dino_deitsmall8_pretrain.pth``: a bare
  state dict that DINO's ``hubconf.py`` loads strictly into its ViT;
- a full training checkpoint holding ``teacher`` and ``student`` state dicts
  of the multi-crop wrapper: backbone under ``backbone.``, the student's
  also under DDP's ``module.``. ``--model`` picks one (default: teacher).
  Heads are dropped with a note: DINO ``head.`` (``head.mlp``,
  ``head.last_layer``); Mugs ``instance_head.``, ``local_group_head.``,
  ``group_head.``. Mugs' backbone itself holds ``relation_blocks.0`` (the
  local-group transformer block, ``num_relation_blocks=1`` in training),
  dropped too; its memories (``student_mem``/``teacher_mem``) are outside
  both state dicts;
- ``state_dict``/``model`` wrappers and ``module.``/``backbone.`` prefixes on
  either, e.g. a Mugs backbone file written by its
  ``extract_backbone_weights.py`` (``{'state_dict': ...}``).

Not verified: the exact content of Mugs' released ``backbone only`` files
(hosted on Hugging Face, not in its repository); any of the above layouts is
accepted and a key matching no rule is an error rather than dropped.

The output holds ``{'state_dict': ..., 'meta': ...}``, keys prefixed with
``--prefix`` (default ``backbone.``, the key of an mmpretrain
``ImageClassifier``; cls_kd's loader also strips it for a bare
``VisionTransformer`` teacher; ``--prefix ''`` writes bare keys). The
architecture is read from the shapes, except the number of heads: from
``--num-heads`` or the width (192: 3, 384: 6, 768: 12, 1024: 16).

Full checkpoints pickle their training ``args`` (an ``argparse.Namespace``),
which the weights-only loader accepts here; ``--trusted`` loads with the
full unpickler, for other objects in a file you trust.
"""
import argparse
import os
import os.path as osp
import re
from collections import Counter, OrderedDict
from typing import Dict, Optional, Tuple

import torch

from cls_kd.utils import extract_state_dict

# DINO/Mugs module -> mmpretrain VisionTransformer module (weight and bias).
MODULES = {
    'patch_embed.proj': 'patch_embed.projection',
    'norm': 'ln1',  # the final norm
}
BLOCK_MODULES = {  # in blocks.{i} -> layers.{i}
    'norm1': 'ln1',
    'attn.qkv': 'attn.qkv',
    'attn.proj': 'attn.proj',
    'norm2': 'ln2',
    'mlp.fc1': 'ffn.layers.0.0',
    'mlp.fc2': 'ffn.layers.1',
}
PARAMETERS = ('cls_token', 'pos_embed')  # same name in both

# First key component -> what it is, for keys that are not the backbone's.
DROPPED = {
    'head': 'DINO head',
    'relation_blocks': 'Mugs local-group relation block',
    'instance_head': 'Mugs instance head',
    'local_group_head': 'Mugs local-group head',
    'group_head': 'Mugs group head',
}

# Width -> heads of the ViT-T/S/B/L of DINO and Mugs.
HEADS_BY_WIDTH = {192: 3, 384: 6, 768: 12, 1024: 16}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='DINO or Mugs checkpoint')
    parser.add_argument('dst', help='where to write the mmpretrain one')
    parser.add_argument(
        '--model',
        choices=('teacher', 'student'),
        help='which network of a full training checkpoint (default: teacher)')
    parser.add_argument(
        '--prefix',
        default='backbone.',
        help="prefix of the written keys (default: 'backbone.'; '' for bare "
        'VisionTransformer keys)')
    parser.add_argument(
        '--num-heads',
        type=int,
        help='attention heads (default: from the width, ViT-T/S/B/L)')
    parser.add_argument(
        '--trusted',
        action='store_true',
        help='load with the full unpickler (only for files you trust)')
    return parser.parse_args(argv)


def load_checkpoint(src: str, trusted: bool = False) -> dict:
    """Read ``src``; weights only, plus ``argparse.Namespace`` (the training
    ``args`` of full checkpoints), unless ``trusted``."""
    if trusted:
        return torch.load(src, map_location='cpu', weights_only=False)
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(src, map_location='cpu', weights_only=True)


def select_network(checkpoint: dict,
                   model: Optional[str] = None) -> Tuple[dict, Optional[str]]:
    """The state dict of one network and its name (None for a file holding
    a single network).

    Args:
        checkpoint (dict): A loaded checkpoint.
        model (str, optional): ``'teacher'`` or ``'student'`` of a full
            training checkpoint. Defaults to None: the teacher if there is
            one.
    """
    networks = [k for k in ('teacher', 'student')
                if isinstance(checkpoint.get(k), dict)]
    if not networks:
        if model is not None:
            raise KeyError(f'--model {model}: the checkpoint holds no '
                           f'teacher/student state dicts, only one network.')
        return extract_state_dict(checkpoint), None
    model = model or 'teacher'
    if model not in networks:
        raise KeyError(f'--model {model}: the checkpoint holds only '
                       f'{networks}.')
    return extract_state_dict(checkpoint[model]), model


def _mmpretrain_key(key: str) -> Optional[str]:
    """The mmpretrain name of a DINO/Mugs backbone key, None if not one."""
    if key in PARAMETERS:
        return key
    module, _, param = key.rpartition('.')
    if param not in ('weight', 'bias'):
        return None
    block = re.fullmatch(r'blocks\.(\d+)\.(.+)', module)
    if block and block.group(2) in BLOCK_MODULES:
        index, name = block.groups()
        return f'layers.{index}.{BLOCK_MODULES[name]}.{param}'
    if module in MODULES:
        return f'{MODULES[module]}.{param}'
    return None


def convert_keys(
        state: Dict[str, torch.Tensor]) -> Tuple[OrderedDict, Counter]:
    """Rename a DINO/Mugs backbone to mmpretrain VisionTransformer keys.

    Args:
        state (dict): The network's state dict, DDP's ``module.`` already
            stripped; the backbone may sit under ``backbone.``.

    Returns:
        tuple: The converted state dict (bare keys) and the count of
        dropped tensors per first key component (``'head'``,
        ``'relation_blocks'``...).

    Raises:
        KeyError: A key is neither the backbone's nor a known extra.
    """
    wrapped = any(k.startswith('backbone.') for k in state)
    converted, dropped, unknown = OrderedDict(), Counter(), []
    for key, value in state.items():
        if wrapped:
            if not key.startswith('backbone.'):
                dropped[key.split('.')[0]] += 1
                continue
            key = key[len('backbone.'):]
        new_key = _mmpretrain_key(key)
        if new_key is not None:
            converted[new_key] = value
        elif key.split('.')[0] in DROPPED:
            dropped[key.split('.')[0]] += 1
        else:
            unknown.append(key)
    if unknown:
        raise KeyError(f'{len(unknown)} key(s) match no DINO/Mugs ViT key: '
                       f'{unknown[:5]}. Is it a ViT checkpoint of DINO or '
                       f'Mugs?')
    if not converted:
        raise KeyError('No DINO/Mugs ViT backbone key in the checkpoint.')
    return converted, dropped


def infer_arch(state: Dict[str, torch.Tensor],
               num_heads: Optional[int] = None) -> dict:
    """The mmpretrain VisionTransformer arguments that fit a converted state
    dict (bare keys).

    Args:
        state (dict): mmpretrain VisionTransformer keys, no prefix.
        num_heads (int, optional): Attention heads; shapes do not tell them.
            Defaults to None: from the width (ViT-T/S/B/L).

    Returns:
        dict: ``arch`` (embed_dims, num_layers, num_heads,
        feedforward_channels), ``patch_size``, ``img_size`` and ``qkv_bias``.
    """
    embed_dims = state['cls_token'].shape[-1]
    if num_heads is None:
        if embed_dims not in HEADS_BY_WIDTH:
            raise ValueError(f'Width {embed_dims} is none of ViT-T/S/B/L '
                             f'{sorted(HEADS_BY_WIDTH)}: give --num-heads.')
        num_heads = HEADS_BY_WIDTH[embed_dims]
    if embed_dims % num_heads:
        raise ValueError(f'{num_heads} heads do not divide the width '
                         f'{embed_dims}.')
    num_layers = len({k.split('.')[1] for k in state
                      if k.startswith('layers.')})
    patch_size = state['patch_embed.projection.weight'].shape[-1]
    grid = round((state['pos_embed'].shape[1] - 1)**0.5)  # cls + grid**2
    return dict(
        arch=dict(
            embed_dims=embed_dims,
            num_layers=num_layers,
            num_heads=num_heads,
            feedforward_channels=state['layers.0.ffn.layers.0.0.weight'].
            shape[0]),
        patch_size=patch_size,
        img_size=grid * patch_size,
        qkv_bias='layers.0.attn.qkv.bias' in state)


def _dropped_note(dropped: Counter) -> str:
    parts = [
        f'{name}. ({count}, {DROPPED.get(name, "not the backbone")})'
        for name, count in sorted(dropped.items())
    ]
    return (f'Dropped {sum(dropped.values())} non-backbone tensor(s): '
            f'{", ".join(parts)}')


def convert(src: str,
            dst: str,
            model: Optional[str] = None,
            prefix: str = 'backbone.',
            num_heads: Optional[int] = None,
            trusted: bool = False) -> dict:
    """Write the converted checkpoint and return its ``meta``.

    Args:
        src (str): A DINO or Mugs checkpoint (backbone only or full).
        dst (str): Where to write the mmpretrain checkpoint.
        model (str, optional): ``'teacher'`` or ``'student'`` of a full
            checkpoint. Defaults to None: the teacher.
        prefix (str): Prefix of the written keys. Defaults to
            ``'backbone.'``.
        num_heads (int, optional): Attention heads. Defaults to None: from
            the width.
        trusted (bool): Load with the full unpickler. Defaults to False.
    """
    state, network = select_network(load_checkpoint(src, trusted), model)
    bare, dropped = convert_keys(state)
    meta = dict(
        source=osp.abspath(src),
        network=network,
        converter='tools/model_converters/dino_to_mmpretrain.py',
        prefix=prefix,
        dropped=dict(dropped),
        num_tensors=len(bare),
        **infer_arch(bare, num_heads))
    converted = OrderedDict((prefix + k, v) for k, v in bare.items())
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    torch.save({'state_dict': converted, 'meta': meta}, dst)
    if dropped:
        print(_dropped_note(dropped))
    return meta


def main(argv=None):
    args = parse_args(argv)
    meta = convert(args.src, args.dst, args.model, args.prefix,
                   args.num_heads, args.trusted)
    source = f' ({meta["network"]})' if meta['network'] else ''
    print(f'Wrote {meta["num_tensors"]} tensors of {args.src}{source} to '
          f'{args.dst}, keys under {args.prefix!r}. Backbone config:\n'
          f'dict(type=\'VisionTransformer\', arch={meta["arch"]}, '
          f'patch_size={meta["patch_size"]}, img_size={meta["img_size"]}, '
          f'qkv_bias={meta["qkv_bias"]}, '
          f"norm_cfg=dict(type='LN', eps=1e-6), out_type='cls_token')")


if __name__ == '__main__':
    main()
