"""Checkpoint helpers: torch >= 2.6 compatibility and teacher loading."""
import re
import types
from collections import OrderedDict
from typing import Dict, Optional

import torch
from mmengine.logging import MMLogger
from mmengine.runner.checkpoint import CheckpointLoader

__all__ = [
    'patch_mmengine_torch_load', 'extract_state_dict', 'load_model_weights'
]


class _TrustedTorch(types.ModuleType):
    """``torch`` as seen by mmengine's checkpoint code, with the pre-2.6
    ``torch.load`` default (``weights_only=False``).

    mmengine's own checkpoints hold its ``HistoryBuffer`` and NumPy
    objects (including ``builtins.getattr`` pickles for NumPy 2 dtypes),
    which the weights-only unpickler refuses. Only the two mmengine modules
    that load checkpoints a user names (``--resume``, ``load_from``,
    ``Pretrained`` init) see this object; ``torch.load`` everywhere else keeps
    its safe default. As before torch 2.6: load checkpoints you trust.
    """

    def __init__(self):
        super().__init__('torch')

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def load(*args, **kwargs):
        kwargs.setdefault('weights_only', False)
        return torch.load(*args, **kwargs)


def patch_mmengine_torch_load() -> None:
    """Let mmengine load its own checkpoints on torch >= 2.6 (idempotent)."""
    from mmengine.runner import checkpoint as mmengine_checkpoint
    from mmengine.utils.dl_utils import hub as mmengine_hub
    for module in (mmengine_checkpoint, mmengine_hub):
        # hub.py only imports torch for old torch versions (it uses
        # torch.hub otherwise, which keeps weights_only=False).
        if hasattr(module, 'torch') and not isinstance(
                module.torch, _TrustedTorch):
            module.torch = _TrustedTorch()


# Wrappers that training frameworks put around a state dict, outermost first.
_STATE_DICT_KEYS = ('state_dict', 'model', 'module')


def extract_state_dict(
        checkpoint: dict,
        prefix: Optional[str] = None) -> Dict[str, torch.Tensor]:
    """Return the bare state dict of a loaded checkpoint.

    Unwraps ``state_dict`` / ``model`` / ``module`` containers, strips the
    ``module.`` prefix that DDP adds and, when ``prefix`` is given, keeps only
    the keys under it (with the prefix removed), e.g. ``prefix='student.'``
    on a distiller checkpoint.
    """
    state = checkpoint
    for key in _STATE_DICT_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise TypeError(f'No state dict found in checkpoint of type '
                        f'{type(checkpoint).__name__}.')
    state = OrderedDict(
        (re.sub(r'^module\.', '', k), v) for k, v in state.items())
    if prefix is not None:
        state = OrderedDict((k[len(prefix):], v) for k, v in state.items()
                            if k.startswith(prefix))
        if not state:
            raise KeyError(f'No key starts with {prefix!r} in the checkpoint.')
    return state


def _align_prefix(state: Dict[str, torch.Tensor],
                  model_keys: set) -> Dict[str, torch.Tensor]:
    """Add or strip one key prefix when that makes the checkpoint fit.

    E.g. a raw timm checkpoint (``stem.conv.weight``) loaded into
    mmpretrain's ``TimmClassifier`` (``model.stem.conv.weight``), or a
    backbone-only checkpoint into a classifier (``backbone.``).
    """
    if not state or model_keys & set(state):
        return state
    first = next(iter(state))
    for model_key in sorted(model_keys):
        if model_key.endswith('.' + first):
            added = model_key[:-len(first)]
            return OrderedDict((added + k, v) for k, v in state.items())
        if first.endswith('.' + model_key):
            cut = first[:-len(model_key)]
            if all(k.startswith(cut) for k in state):
                return OrderedDict((k[len(cut):], v) for k, v in state.items())
    return state


def load_model_weights(model: torch.nn.Module,
                       filename: str,
                       prefix: Optional[str] = None,
                       logger_name: str = 'cls_kd') -> Dict[str, list]:
    """Load a checkpoint (path or URL) into ``model`` and report mismatches.

    Missing and unexpected keys are logged as warnings; a checkpoint that
    matches none of the model's keys is an error (it is the wrong file).

    Returns:
        dict: ``missing_keys`` and ``unexpected_keys``.
    """
    patch_mmengine_torch_load()
    checkpoint = CheckpointLoader.load_checkpoint(filename, map_location='cpu')
    state = extract_state_dict(checkpoint, prefix)
    model_keys = set(model.state_dict().keys())
    state = _align_prefix(state, model_keys)
    if not model_keys & set(state.keys()):
        raise KeyError(
            f'Checkpoint {filename} shares no key with the model '
            f'{type(model).__name__}: checkpoint keys look like '
            f'{sorted(state)[:3]}, model keys like {sorted(model_keys)[:3]}.')
    result = model.load_state_dict(state, strict=False)
    logger = MMLogger.get_instance(logger_name)
    if result.missing_keys:
        logger.warning(f'{filename}: missing keys in checkpoint: '
                       f'{result.missing_keys}')
    if result.unexpected_keys:
        logger.warning(f'{filename}: unexpected keys in checkpoint: '
                       f'{result.unexpected_keys}')
    return dict(missing_keys=result.missing_keys,
                unexpected_keys=result.unexpected_keys)
