"""Building a frozen teacher from its spec: the model (a config dict or an
mmpretrain config file), its weights, and the input re-normalisation from
the student's preprocessor."""
import copy
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.config import Config, ConfigDict
from mmengine.logging import MMLogger

from cls_kd.errors import DistillerConfigError
from cls_kd.registry import MODELS
from cls_kd.utils import (
    CheckpointError,
    cast_numpy_scalars,
    load_model_weights,
    resolve_config_path,
)

__all__ = [
    'build_teacher', 'expected_input_size', 'resolve_input_size',
    'renormalisation'
]

_TEACHER_KEYS = {
    'config', 'checkpoint', 'random_init', 'prefix', 'allow_unexpected_keys',
    'data_preprocessor', 'override', 'train_mode', 'outputs'
}


def _checkpoint_option(name: str) -> str:
    return 'model.teacher.checkpoint' if name == 'teacher' else \
        f'model.teachers.{name}.checkpoint'


def _load_weights(name: str, teacher: nn.Module,
                  spec: dict) -> Optional[dict]:
    """Load the teacher's checkpoint, or keep random weights when the spec
    says ``random_init=True``; anything else is a config error. Returns
    the loader's key report (None for random weights)."""
    checkpoint = spec.get('checkpoint')
    if spec.get('random_init', False):
        if checkpoint is not None:
            raise DistillerConfigError(
                f'Teacher {name!r} has both checkpoint={checkpoint!r} and '
                f'random_init=True: drop one of them.')
        MMLogger.get_current_instance().warning(
            f'Teacher {name!r} keeps random weights (random_init=True): '
            f'fine for tests and benchmarks, useless for distillation.')
        return
    if checkpoint is None:
        raise DistillerConfigError(
            f'Teacher {name!r} has no checkpoint: distilling from random '
            f'weights teaches nothing. Pass one with --cfg-options '
            f'{_checkpoint_option(name)}=<file> (or set random_init=True in '
            f'the teacher spec, for tests and benchmarks only).')
    try:
        return load_model_weights(
            teacher, checkpoint, prefix=spec.get('prefix'),
            allow_unexpected_keys=spec.get('allow_unexpected_keys', False))
    except CheckpointError as e:
        raise DistillerConfigError(f'Teacher {name!r}: {e}') from e


def build_teacher(name: str,
                  spec: dict,
                  report: Optional[dict] = None
                  ) -> Tuple[nn.Module, Optional[dict]]:
    """Build, load and freeze one teacher.

    Args:
        name (str): The teacher's name, for messages.
        spec (dict): The teacher spec:

            - ``config``: a model config dict, or the path of a config file
              whose ``model`` is used (``mmpretrain::``/``cls_kd::`` paths
              accepted; relative paths are tried from the current directory
              -- the tools first resolve them against the directory of the
              config naming them, see :func:`resolve_teacher_paths`).
            - ``checkpoint``: path or URL of the weights; required.
            - ``random_init`` (bool): keep random weights instead (with a
              warning); for tests and benchmarks only. Defaults to False.
            - ``prefix`` (str): take only the checkpoint keys under this
              prefix, stripped, e.g. ``'student.'`` to use a cls_kd
              distiller checkpoint's student as the teacher. Defaults to
              None.
            - ``allow_unexpected_keys`` (bool): checkpoint keys the teacher
              lacks are a warning instead of an error (missing keys always
              are an error). Defaults to False.
            - ``data_preprocessor``: its ``mean``/``std``/``to_rgb``;
              defaults to the config file's, else the student's.
            - ``override``: a dict merged into the model config like a child
              config, e.g. ``dict(backbone=dict(type='FixedDeiT3'))``.
            - ``train_mode`` (bool): the teacher follows the distiller's
              ``train()``/``eval()`` (dropout, drop-path and BatchNorm
              statistics active in training) instead of staying in eval
              mode. Only to reproduce published code that leaves its
              teacher in train mode (ScaleKD's); its parameters stay frozen.
              Defaults to False.
            - ``outputs``: a directory of stored outputs of this teacher
              (``tools/dump_teacher_outputs.py``), or ``dict(dir=...,
              min_topk=...)``: training reads them instead of running it
              (logit losses only, see
              :mod:`cls_kd.models.teachers.stored_outputs`); it is still
              built, for its digest and validation. Defaults to None.

        report (dict, optional): Filled with where the weights came from,
            for the distiller summary: ``config``, ``checkpoint``, ``total``
            (the teacher's state-dict keys), ``loaded`` and ``unexpected``
            (checkpoint keys it lacks, when allowed).

    Returns:
        tuple: The frozen teacher in eval mode and its preprocessor config.

    Raises:
        DistillerConfigError: Unknown spec keys, no checkpoint (and no
            ``random_init``), or a checkpoint that is unreadable or does not
            fit the teacher (the message names the teacher, the file and the
            offending keys).
    """
    unknown = set(spec) - _TEACHER_KEYS
    if 'config' not in spec or unknown:
        raise DistillerConfigError(
            f'Teacher {name!r} must be dict(config=..., checkpoint=..., '
            f'[{", ".join(sorted(_TEACHER_KEYS - {"config", "checkpoint"}))}'
            f']); got keys {sorted(spec)}.')
    config: Union[str, dict] = spec['config']
    preprocessor = spec.get('data_preprocessor')
    if isinstance(config, str):
        try:
            path = resolve_config_path(config)
        except FileNotFoundError as e:
            raise FileNotFoundError(f'Teacher {name!r}: {e}') from None
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
    result = _load_weights(name, teacher, spec)
    if report is not None:
        total = len(teacher.state_dict())
        report.update(
            config=config if isinstance(config, str) else
            f'a model dict ({model_cfg["type"]})',
            checkpoint=spec.get('checkpoint'), total=total,
            loaded=total - len(result['missing_keys']) if result else 0,
            unexpected=len(result['unexpected_keys']) if result else 0)
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


def resolve_input_size(input_size: Optional[Union[int, Tuple[int, int]]],
                       models) -> Tuple[int, int]:
    """A distiller's image size: ``input_size`` if given, else the first
    fixed patch-embedding size among ``models`` (see
    :func:`expected_input_size`), else 224x224."""
    if isinstance(input_size, int):
        return (input_size, input_size)
    if input_size is not None:
        return tuple(input_size)
    for model in models:
        size = expected_input_size(model)
        if size is not None:
            return size
    return (224, 224)


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
