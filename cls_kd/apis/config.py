"""How every tool reads its config: a file or a packaged name
(``cls_kd::kd/x.py``, ``mmpretrain::resnet/y.py``) from the command line,
``--cfg-options`` merged, cls_kd's and mmpretrain's modules registered, the
config's default scope entered and relative teacher configs resolved."""
import argparse
from typing import Optional, Union

from mmengine.config import Config
from mmengine.registry import init_default_scope

import cls_kd
from cls_kd.utils.config_paths import (
    resolve_config_path,
    resolve_teacher_paths,
)

__all__ = ['config_file', 'config_arg', 'load_config']


def config_file(path: str) -> str:
    """The file of a config named on a tool's command line: a path, or a
    packaged config (``cls_kd::kd/x.py``, ``mmpretrain::resnet/y.py``),
    whose file is printed.

    Args:
        path (str): As given on the command line.

    Returns:
        str: An existing file.

    Raises:
        FileNotFoundError: No such config; the one-line message lists where
            it was looked for (``config 'x.py' not found; tried: ...``).
    """
    found = resolve_config_path(path)
    if '::' in path:
        print(f'{path} -> {found}', flush=True)
    return found


def config_arg(path: str) -> str:
    """:func:`config_file` as an ``argparse`` type: every tool's
    ``config`` argument takes ``cls_kd::`` names, and a config that does not
    exist is a one-line usage error listing where it was looked for."""
    try:
        return config_file(path)
    except FileNotFoundError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def load_config(config: Union[str, Config],
                cfg_options: Optional[dict] = None) -> Config:
    """Read a config the way every tool does, in this order:

    1. the file (:func:`config_file`: a path or a packaged name);
    2. ``cfg_options`` (``--cfg-options``) merged into it;
    3. cls_kd's and mmpretrain's modules registered, and the config's
       ``default_scope`` (``'cls_kd'`` when it names none) entered, so that
       its types build outside a Runner too;
    4. relative teacher ``config=`` paths (also those that ``cfg_options``
       set) made absolute against the config's directory
       (:func:`~cls_kd.utils.resolve_teacher_paths`), so that the tool runs
       from any directory.

    Args:
        config (str | Config): A config file, a packaged config name, or a
            config read already (e.g. one a test edited), taken as it is.
        cfg_options (dict, optional): ``key -> value`` overrides, as
            mmengine's ``DictAction`` parses ``--cfg-options``.

    Returns:
        Config: The config, changed in place when one was given.

    Raises:
        FileNotFoundError: The config, or a teacher config it names, does
            not exist; the message lists where it was looked for.
    """
    cfg = config if isinstance(config, Config) else Config.fromfile(
        config_file(config))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cls_kd.register_all_modules(init_default_scope=False)
    init_default_scope(cfg.get('default_scope') or 'cls_kd')
    return resolve_teacher_paths(cfg)

