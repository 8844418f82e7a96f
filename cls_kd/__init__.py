"""cls_kd: knowledge distillation for image classification on mmpretrain."""
import importlib.util

if importlib.util.find_spec('mmcv') is None:
    raise ImportError(
        'cls_kd needs mmcv: `pip install "mmcv-lite>=2.0,<2.4"` (or keep the '
        'full mmcv you already have).')

from .utils import (  # noqa: E402
    patch_mmengine_package_configs,
    patch_mmengine_torch_load,
)
from .version import __version__  # noqa: E402

# mmengine 0.10.7 cannot load its own checkpoints on torch >= 2.6 otherwise.
patch_mmengine_torch_load()
# Nor take `cls_kd::` config paths (from an editable install either).
patch_mmengine_package_configs()


def register_all_modules(init_default_scope: bool = True) -> None:
    """Import every cls_kd module into the registries; optionally make
    ``cls_kd`` the default scope (what configs do with ``default_scope``)."""
    from mmpretrain.utils import register_all_modules as register_mmpretrain
    register_mmpretrain(init_default_scope=False)
    import cls_kd.datasets  # noqa: F401
    import cls_kd.engine  # noqa: F401
    import cls_kd.evaluation  # noqa: F401
    import cls_kd.models  # noqa: F401
    if init_default_scope:
        from mmengine.registry import init_default_scope as _init
        _init('cls_kd')


__all__ = ['__version__', 'register_all_modules']
