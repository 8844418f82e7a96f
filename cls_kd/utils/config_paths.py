"""Where a config file named by another config lies: teacher ``config=``
paths relative to the config that names them, and ``package::`` configs
(``mmpretrain::``, ``cls_kd::``) also from editable installs.

The tools name their own config through :mod:`cls_kd.apis.config`."""
import importlib.util
import os.path as osp
from typing import Dict, List, Optional, Tuple

__all__ = [
    'installed_path', 'patch_mmengine_package_configs',
    'resolve_config_path', 'resolve_teacher_paths', 'teacher_specs'
]


def installed_path(package: str) -> str:
    """Directory of an installed package, as mmengine's
    ``get_installed_path`` but also right for editable installs.

    A PEP 660 editable install (``pip install -e .``) keeps its metadata in
    site-packages and the code elsewhere, so mmengine's answer
    (``<site-packages>/<package>``) does not exist; the import system knows
    where the package is.

    Args:
        package (str): The package name, e.g. ``'cls_kd'``.
    """
    from mmengine.utils.package_utils import (
        get_installed_path,
        package2module,
    )
    path = get_installed_path(package)
    if osp.isdir(path):
        return path
    spec = importlib.util.find_spec(package2module(package))
    if spec is not None and spec.origin is not None:
        return osp.dirname(spec.origin)
    return path


def _package_and_relative(path: str) -> Tuple[str, str]:
    """``('cls_kd', 'kd/x.py')`` for ``'cls_kd::kd/x.py'``; other packages
    as mmengine maps them (``mmpretrain``, ``mmdet``, ...)."""
    from mmengine.config.utils import _get_package_and_cfg_path
    package, _, relative = path.partition('::')
    if package == 'cls_kd':
        return package, relative
    return _get_package_and_cfg_path(path)


def patch_mmengine_package_configs() -> None:
    """Let mmengine's config loader take ``cls_kd::`` paths (``_base_``),
    also from an editable install (idempotent).

    mmengine 0.10.7 accepts ``package::`` only for a fixed list of OpenMMLab
    packages and looks a package up with ``get_installed_path``, wrong for
    editable installs (see :func:`installed_path`). Only the two names its
    config module imported are replaced; mmengine's package list (which also
    steers its registries) is untouched.
    """
    from mmengine.config import config as mmengine_config
    mmengine_config.get_installed_path = installed_path
    mmengine_config._get_package_and_cfg_path = _package_and_relative


def _package_config_path(path: str) -> str:
    from mmengine.config.utils import _get_external_cfg_path
    package, relative = _package_and_relative(path)
    package_path = installed_path(package)
    try:
        # A config listed in the package's metafiles, else a plain file
        # under <package>/.mim/configs (as mmengine resolves ``_base_``).
        return _get_external_cfg_path(package_path, relative)
    except (ValueError, FileNotFoundError):
        return osp.join(package_path, '.mim', 'configs', relative)


def resolve_config_path(path: str, config_dir: Optional[str] = None) -> str:
    """Path of a config file named in a config.

    Tried in order: ``package::relative/path.py`` (the package's
    ``.mim/configs``), ``path`` itself (absolute, or relative to the current
    directory), then ``path`` relative to ``config_dir``.

    Args:
        path (str): The path as written in the config.
        config_dir (str, optional): Directory of the config file that names
            ``path``.

    Returns:
        str: An existing file; absolute when found under ``config_dir``.

    Raises:
        FileNotFoundError: None of the candidates exists; the message lists
            them.
    """
    if '::' in path:
        candidates: List[str] = [_package_config_path(path)]
    else:
        candidates = [path]
        if config_dir is not None and not osp.isabs(path):
            candidates.append(osp.abspath(osp.join(config_dir, path)))
    for candidate in candidates:
        if osp.isfile(candidate):
            return candidate
    tried = ', '.join(osp.abspath(c) for c in candidates)
    raise FileNotFoundError(f'config {path!r} not found; tried: {tried}.')


def teacher_specs(model_cfg: dict) -> Dict[str, dict]:
    """The teacher specs of a distiller config, ``name -> spec`` (the
    config's own dicts, so that editing them edits the config).

    Args:
        model_cfg (dict): The config's ``model``.
    """
    if model_cfg.get('teacher') is not None:
        return dict(teacher=model_cfg['teacher'])
    return dict(model_cfg.get('teachers') or {})


def resolve_teacher_paths(cfg):
    """Make the relative teacher ``config=`` paths of ``cfg`` absolute,
    resolved against the directory of ``cfg.filename`` (in place).

    Called by :func:`cls_kd.apis.load_config`, which every tool loads its
    config with, so that a user's ``config='./my_teacher.py'`` next to
    their config works from any directory. A path written in a ``_base_``
    file is resolved against the top-level config's directory, not the base
    file's: a base file should write ``'{{fileDirname}}/relative/path.py'``
    (mmengine substitutes the base file's own directory), as
    configs/_base_/distill does.

    Args:
        cfg (mmengine.Config): A loaded config; its ``model.teacher`` and
            ``model.teachers`` specs are updated, or in a config without
            ``model`` (a synthesis config of ``tools/synthesize.py``) its
            ``teacher`` and ``student`` specs.

    Returns:
        Config: ``cfg``.

    Raises:
        FileNotFoundError: A teacher config exists at none of the candidate
            paths (listed in the message).
    """
    model = cfg.get('model')
    if model is None:
        specs = {name: cfg.get(name) for name in ('teacher', 'student')}
    else:
        specs = {'teacher': model.get('teacher')}
        specs.update(model.get('teachers') or {})
    filename = getattr(cfg, 'filename', None)
    config_dir = osp.dirname(osp.abspath(filename)) if filename else None
    for name, spec in specs.items():
        if not isinstance(spec, dict) or not isinstance(
                spec.get('config'), str) or '::' in spec['config']:
            continue
        try:
            path = resolve_config_path(spec['config'], config_dir)
        except FileNotFoundError as e:
            hint = '' if osp.isabs(spec['config']) else (
                ' A relative teacher config= is read from the current '
                'directory, then from the directory of the config you ran '
                f'({config_dir}); written in a _base_ file, make it '
                "relative to that file: config='{{fileDirname}}/"
                f"{spec['config']}'.")
            raise FileNotFoundError(f'Teacher {name!r}: {e}{hint}') from None
        spec['config'] = osp.abspath(path)
    return cfg
