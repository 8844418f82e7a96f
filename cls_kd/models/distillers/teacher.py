"""Building frozen teachers from a config dict or an (mmpretrain) config."""
import copy
import os.path as osp
from typing import Callable, Dict, Iterator, Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.config import Config, ConfigDict
from mmengine.logging import MMLogger

from cls_kd.registry import MODELS
from cls_kd.utils import cast_numpy_scalars, load_model_weights

__all__ = [
    'build_teacher', 'resolve_config_path', 'expected_input_size',
    'renormalisation', 'TeacherSet', 'FrozenTeachersMixin'
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


class TeacherSet:
    """The frozen teachers of a distiller, kept outside its module tree.

    Not an ``nn.Module`` on purpose: the teachers are then in no state dict
    (checkpoints hold the student and connectors), optimizer, EMA copy or
    DDP wrapper, and ``train()`` never reaches them. The distiller forwards
    ``_apply`` (``.to()``/``.cuda()``) and shares them with its copies.

    Args:
        specs (dict): ``name -> teacher spec`` (see :func:`build_teacher`).
        student_preprocessor (nn.Module): The student's data preprocessor;
            teacher inputs are re-normalised from it when theirs differs.
        reserved (set[str]): Names a teacher may not take (built-in sources
            and ``x`` for which ``logits_x`` is one).
    """

    def __init__(self, specs: Dict[str, dict], student_preprocessor,
                 reserved: set):
        self._models: Dict[str, nn.Module] = {}
        self._renorm: Dict[str, tuple] = {}
        self._checked_sizes = set()
        for name, spec in specs.items():
            clash = name in reserved or f'logits_{name}' in reserved
            if not name.isidentifier() or clash:
                raise ValueError(
                    f'Teacher name {name!r} is not allowed: it must be an '
                    f'identifier and neither it nor logits_{name} may be a '
                    f'built-in source ({sorted(reserved)}).')
            self._models[name], preprocessor = build_teacher(name, spec)
            renorm = renormalisation(student_preprocessor, preprocessor)
            if renorm is not None:
                self._renorm[name] = renorm

    def __getitem__(self, name: str) -> nn.Module:
        if name not in self._models:
            raise KeyError(f'No teacher {name!r}; teachers: '
                           f'{sorted(self._models)}.')
        return self._models[name]

    def __contains__(self, name) -> bool:
        return name in self._models

    def __iter__(self) -> Iterator[str]:
        return iter(self._models)

    def __len__(self) -> int:
        return len(self._models)

    def items(self):
        return self._models.items()

    def values(self):
        return self._models.values()

    @property
    def first(self) -> Optional[str]:
        """The teacher ``logits_t`` refers to."""
        return next(iter(self._models), None)

    def check_input(self, inputs: torch.Tensor) -> None:
        """Refuse a batch size a teacher's position embedding was not built
        for (checked once per size)."""
        size = tuple(inputs.shape[-2:])
        if size in self._checked_sizes:
            return
        for name, teacher in self._models.items():
            expected = expected_input_size(teacher)
            if expected is not None and expected != size:
                raise ValueError(
                    f'Teacher {name!r} was built for {expected[0]}x'
                    f'{expected[1]} images but the batch is {size[0]}x'
                    f'{size[1]}: its position embedding would be '
                    f'interpolated, silently lowering its accuracy. Make the '
                    f'student pipeline produce {expected[0]}x{expected[1]} '
                    f'or build the teacher for {size[0]}x{size[1]}.')
        self._checked_sizes.add(size)

    def inputs_for(self, name: str, inputs: torch.Tensor) -> torch.Tensor:
        """The student's (preprocessed) batch as teacher ``name`` expects
        it."""
        if name not in self._renorm:
            return inputs
        scale, shift, flip = self._renorm[name]
        if flip:
            inputs = inputs.flip(1)
        return torch.addcmul(
            shift.to(inputs.device, inputs.dtype), inputs,
            scale.to(inputs.device, inputs.dtype))

    def eval(self) -> None:
        for teacher in self._models.values():
            teacher.eval()

    def apply(self, fn: Callable, *args, **kwargs) -> None:
        """What ``nn.Module._apply`` does to the distiller (``.to()``)."""
        for teacher in self._models.values():
            teacher._apply(fn, *args, **kwargs)
        self._renorm = {
            name: (fn(scale), fn(shift), flip)
            for name, (scale, shift, flip) in self._renorm.items()
        }

    def share_in(self, memo: dict) -> None:
        """Make ``copy.deepcopy`` with ``memo`` share the teachers."""
        for teacher in self._models.values():
            for obj in [teacher, *teacher.modules(), *teacher.parameters(),
                        *teacher.buffers()]:
                memo[id(obj)] = obj


class FrozenTeachersMixin:
    """What an ``nn.Module`` holding a :class:`TeacherSet` in ``teachers``
    (and its taps, installed by ``_install_taps`` / removed by
    ``remove_taps``) must do so the teachers stay frozen and shared: eval
    mode whatever ``train()`` is called with, moved by ``.to()``, shared
    (not copied) by ``copy.deepcopy`` (EMA copies)."""

    def train(self, mode: bool = True):
        super().train(mode)
        self.teachers.eval()
        return self

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        self.teachers.apply(fn, *args, **kwargs)
        self._idle_params = None
        return self

    def __deepcopy__(self, memo):
        """Copies share the frozen teachers (e.g. EMA copies of the model);
        each copy puts its own hooks on its own student."""
        self.teachers.share_in(memo)
        self.remove_taps()
        try:
            new = copy._reconstruct(self, memo, *self.__reduce_ex__(4))
        finally:
            self._install_taps()
        new._install_taps()
        return new

    def __del__(self):
        # Teachers may outlive the distiller (they are shared with copies).
        try:
            self.remove_taps()
        except Exception:  # interpreter shutdown: nothing left to clean
            pass
