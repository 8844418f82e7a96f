"""Checkpoint helpers: torch >= 2.6 compatibility, strict teacher loading
and plain-student checkpoints into a distiller."""
import re
import types
from collections import OrderedDict
from typing import Dict, List, Optional

import torch
from mmengine.logging import MMLogger
from mmengine.runner.checkpoint import CheckpointLoader

__all__ = [
    'patch_mmengine_torch_load', 'extract_state_dict', 'load_model_weights',
    'CheckpointError', 'load_plain_student_hook', 'key_listing'
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


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded as asked: unreadable, of another
    model, or not matching the model's keys and shapes."""


def key_listing(items: List[str], first: int = 10) -> str:
    """The first ``first`` keys, then how many more."""
    shown = ', '.join(items[:first])
    more = f' and {len(items) - first} more' if len(items) > first else ''
    return f'{shown}{more}'


def _read(filename: str) -> dict:
    try:
        return CheckpointLoader.load_checkpoint(filename, map_location='cpu')
    except Exception as e:
        raise CheckpointError(
            f'Cannot read checkpoint {filename} (missing, truncated or not '
            f'a PyTorch checkpoint?): {type(e).__name__}: {e}') from e


def _shape_mismatches(model: torch.nn.Module, state: dict,
                      error: RuntimeError) -> List[str]:
    """``key: checkpoint shape vs model shape`` of the keys that torch's
    ``error`` names as size mismatches."""
    model_state = model.state_dict()
    found = []
    for key, value in state.items():
        if f'size mismatch for {key}:' in str(error):
            found.append(f'{key}: {tuple(value.shape)} vs '
                         f'{tuple(model_state[key].shape)}')
    return found


def load_model_weights(model: torch.nn.Module,
                       filename: str,
                       prefix: Optional[str] = None,
                       allow_unexpected_keys: bool = False,
                       logger_name: str = 'cls_kd') -> Dict[str, list]:
    """Load a checkpoint (path or URL) into ``model``, strictly.

    The checkpoint may be wrapped (``state_dict``/``model``/``module``), carry
    DDP's ``module.`` prefix or one key prefix more or less than the model
    (see :func:`extract_state_dict` and :func:`_align_prefix`).

    Args:
        model (nn.Module): The model to load into.
        filename (str): Path or URL of the checkpoint.
        prefix (str, optional): Take only the keys under this prefix, with
            it removed (``'student.'`` on a distiller checkpoint).
        allow_unexpected_keys (bool): Checkpoint keys the model lacks are
            logged as a warning instead of an error. Defaults to False.
        logger_name (str): The logger of that warning.

    Returns:
        dict: ``missing_keys`` (always empty) and ``unexpected_keys``.

    Raises:
        CheckpointError: The file cannot be read, shares no key with the
            model, has tensors of other shapes, lacks some of the model's
            keys (BN ``num_batches_tracked`` counters aside) or has keys the
            model lacks (unless ``allow_unexpected_keys``). The model may be
            partly loaded then.
    """
    patch_mmengine_torch_load()
    checkpoint = _read(filename)
    try:
        state = extract_state_dict(checkpoint, prefix)
    except (KeyError, TypeError) as e:
        raise CheckpointError(f'Checkpoint {filename}: {e.args[0]}') from None
    model_keys = set(model.state_dict().keys())
    state = _align_prefix(state, model_keys)
    name = type(model).__name__
    if not model_keys & set(state.keys()):
        hint = ''
        if prefix is None and any(k.startswith('student.') for k in state):
            hint = (" It looks like a distiller checkpoint: prefix='student.' "
                    'takes its student.')
        raise CheckpointError(
            f'Checkpoint {filename} shares no key with the model {name}: '
            f'checkpoint keys look like {sorted(state)[:3]}, model keys like '
            f'{sorted(model_keys)[:3]}.{hint}')
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as e:
        mismatches = _shape_mismatches(model, state, e)
        if not mismatches:
            e.add_note(f'Loading checkpoint {filename} into {name}.')
            raise
        raise CheckpointError(
            f'Checkpoint {filename} does not fit {name}: {len(mismatches)} '
            f'tensor(s) have other shapes (checkpoint vs model): '
            f'{key_listing(mismatches, 5)}. Is it a checkpoint of another '
            f'architecture?') from None
    missing = [
        k for k in result.missing_keys if not k.endswith('num_batches_tracked')
    ]
    if missing:
        raise CheckpointError(
            f'Checkpoint {filename} lacks {len(missing)} of the {name}\'s '
            f'keys: {key_listing(missing)}. Is it a checkpoint of this '
            f'architecture (depth, width, head)?')
    unexpected = list(result.unexpected_keys)
    if unexpected:
        message = (f'Checkpoint {filename} has {len(unexpected)} key(s) '
                   f'that {name} lacks: {key_listing(unexpected)}')
        if not allow_unexpected_keys:
            raise CheckpointError(
                f'{message}. Is it a checkpoint of another architecture? '
                f'(allow_unexpected_keys=True ignores them.)')
        MMLogger.get_instance(logger_name).warning(f'{message} (ignored).')
    return dict(missing_keys=[], unexpected_keys=unexpected)


def load_plain_student_hook(module: torch.nn.Module, state_dict: dict,
                            prefix: str, *args) -> None:
    """``load_state_dict`` pre-hook of a distiller: a checkpoint of its
    student alone (as ``tools/model_converters/extract_student.py`` writes,
    given as ``load_from``) is loaded as the student.

    When no key under ``prefix`` belongs to one of the distiller's own
    modules (``student.``, ``connectors.``, ...) but some are the student's,
    every key gets ``student.`` (in place) and an INFO line says so.

    Args:
        module (nn.Module): The distiller; its student is ``module.student``.
        state_dict (dict): The state dict being loaded (edited in place).
        prefix (str): The distiller's prefix in it (``''`` at the top).
        *args: The rest of torch's pre-hook arguments (unused).

    Raises:
        CheckpointError: The keys match neither the distiller nor its
            student.
    """
    keys = [k for k in state_dict if k.startswith(prefix)]
    local = [k[len(prefix):] for k in keys]
    owned = tuple(f'{n}.' for n, _ in module.named_children()
                  if n != 'data_preprocessor')  # the student's too
    if not keys or any(k.startswith(owned) for k in local):
        return
    student_keys = set(module.student.state_dict())
    if not student_keys & set(local):
        raise CheckpointError(
            f'The checkpoint matches neither {type(module).__name__} (keys '
            f'under {", ".join(owned)}) nor its student (keys like '
            f'{sorted(student_keys)[:3]}): its keys look like '
            f'{sorted(local)[:3]}.')
    for key, bare in zip(keys, local):
        state_dict[f'{prefix}student.{bare}'] = state_dict.pop(key)
    MMLogger.get_current_instance().info(
        f'The checkpoint holds a plain student ({len(keys)} tensors, '
        f'{len(student_keys & set(local))} of them the student\'s): loaded '
        f'into the distiller under student.')
