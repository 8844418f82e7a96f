"""Building frozen teachers from a config dict or an (mmpretrain) config."""
import copy
import os.path as osp
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.config import Config, ConfigDict
from mmengine.logging import MMLogger

from cls_kd.registry import MODELS
from cls_kd.utils import cast_numpy_scalars, load_model_weights

__all__ = [
    'build_teacher', 'resolve_config_path', 'expected_input_size',
    'renormalisation'
]

_TEACHER_KEYS = {'config', 'checkpoint', 'data_preprocessor', 'override'}


def resolve_config_path(path: str) -> str:
    """Path of a config file, accepting ``package::relative/path.py``."""
    if '::' not in path:
        return path
    from mmengine.config.utils import (
        _get_external_cfg_base_path,
        _get_external_cfg_path,
        _get_package_and_cfg_path,
    )
    from mmengine.utils import get_installed_path
    package, relative = _get_package_and_cfg_path(path)
    package_path = get_installed_path(package)
    try:
        return _get_external_cfg_path(package_path, relative)
    except ValueError:
        return _get_external_cfg_base_path(package_path, relative)


def build_teacher(name: str,
                  spec: dict) -> Tuple[nn.Module, Optional[dict]]:
    """Build, load and freeze one teacher.

    Args:
        name (str): The teacher's name, for messages.
        spec (dict): ``config`` (a model config dict, or the path of a config
            file whose ``model`` is used, ``mmpretrain::`` paths accepted),
            ``checkpoint`` (path or URL; None keeps random weights, with a
            warning) and ``data_preprocessor`` (its ``mean``/``std``/
            ``to_rgb``; defaults to the config file's, else the student's)
            and ``override`` (a dict merged into the model config like a
            child config, e.g. ``dict(backbone=dict(type='FixedDeiT3'))``).

    Returns:
        tuple: The frozen teacher in eval mode and its preprocessor config.
    """
    unknown = set(spec) - _TEACHER_KEYS
    if 'config' not in spec or unknown:
        raise ValueError(
            f'Teacher {name!r} must be dict(config=..., checkpoint=..., '
            f'[data_preprocessor=..., override=...]); got keys '
            f'{sorted(spec)}.')
    config: Union[str, dict] = spec['config']
    preprocessor = spec.get('data_preprocessor')
    if isinstance(config, str):
        path = resolve_config_path(config)
        if not osp.isfile(path):
            raise FileNotFoundError(f'Teacher {name!r}: config {config!r} '
                                    f'not found.')
        file_cfg = Config.fromfile(path)
        model_cfg = file_cfg.model
        if preprocessor is None:
            preprocessor = file_cfg.get('data_preprocessor')
    else:
        model_cfg = config
    model_cfg = copy.deepcopy(dict(model_cfg))
    if spec.get('override'):
        model_cfg = Config._merge_a_into_b(
            copy.deepcopy(dict(spec['override'])), ConfigDict(model_cfg))
        model_cfg = model_cfg.to_dict()
    # The teacher's weights come from ``checkpoint``; a pretrained init_cfg
    # (often a URL) would never be used since init_weights is not called.
    model_cfg.pop('init_cfg', None)
    teacher = MODELS.build(model_cfg)
    cast_numpy_scalars(teacher)
    checkpoint = spec.get('checkpoint')
    if checkpoint is None:
        MMLogger.get_current_instance().warning(
            f'Teacher {name!r} has no checkpoint: it keeps random weights '
            f'(fine for tests and benchmarks, useless for distillation).')
    else:
        load_model_weights(teacher, checkpoint)
    teacher.requires_grad_(False)
    teacher.eval()
    return teacher, preprocessor


def expected_input_size(model: nn.Module) -> Optional[Tuple[int, int]]:
    """The image size a model's patch embedding was built for, if fixed.

    mmpretrain's ViTs silently interpolate their position embedding for
    other sizes, which costs accuracy for a pre-trained teacher.
    """
    backbone = getattr(model, 'backbone', model)
    # mmpretrain backbones, timm models in TIMMBackbone / TimmClassifier.
    for owner in (backbone, getattr(backbone, 'timm_model', None),
                  getattr(model, 'model', None)):
        patch_embed = getattr(owner, 'patch_embed', None)
        if patch_embed is None or getattr(owner, 'dynamic_img_size', False):
            continue
        for attr in ('init_input_size', 'img_size'):
            size = getattr(patch_embed, attr, None)
            if size is not None:
                size = (size, size) if isinstance(size, int) else tuple(size)
                return tuple(int(s) for s in size)
    return None


def renormalisation(student_pre: nn.Module, teacher_pre: Optional[dict]):
    """``(scale, shift, flip)`` turning student-normalised inputs into
    teacher-normalised ones, or None when both normalise alike."""
    if teacher_pre is None:
        return None
    s_mean = getattr(student_pre, 'mean', None)
    s_std = getattr(student_pre, 'std', None)
    if s_mean is None or not getattr(student_pre, '_enable_normalize', True):
        s_mean, s_std = torch.zeros(3, 1, 1), torch.ones(3, 1, 1)
    # What the teacher's preprocessor leaves out is the student's.
    t_mean = torch.tensor(teacher_pre['mean'], dtype=torch.float32).view(
        -1, 1, 1) if 'mean' in teacher_pre else s_mean.float().cpu()
    t_std = torch.tensor(teacher_pre['std'], dtype=torch.float32).view(
        -1, 1, 1) if 'std' in teacher_pre else s_std.float().cpu()
    student_to_rgb = getattr(
        student_pre, 'to_rgb',
        getattr(student_pre, '_channel_conversion', False))
    flip = bool(teacher_pre.get('to_rgb', False)) != bool(student_to_rgb)
    s_mean, s_std = s_mean.float().cpu(), s_std.float().cpu()
    if flip:
        # Undo the student's normalisation in its channel order, then flip.
        s_mean, s_std = s_mean.flip(0), s_std.flip(0)
    if not flip and torch.allclose(s_mean, t_mean) and torch.allclose(
            s_std, t_std):
        return None
    # x_t = (x_s * std_s + mean_s - mean_t) / std_t
    return s_std / t_std, (s_mean - t_mean) / t_std, flip
