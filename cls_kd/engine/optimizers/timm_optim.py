"""timm's optimizers that official recipes use, in mmengine's registry.

``RMSpropTF`` is RMSprop in TensorFlow's form (epsilon inside the square
root, the square average starting at one, the learning rate inside the
momentum buffer): ``opt: rmsproptf`` of timm-based recipes such as DIST's
``dist_b2.yaml``. Its defaults are timm's (``alpha=0.9``, ``eps=1e-10``,
``momentum=0``): a config sets the recipe's values explicitly.
"""
from mmengine.registry import OPTIMIZERS
from timm.optim import RMSpropTF

if 'RMSpropTF' not in OPTIMIZERS.module_dict:
    OPTIMIZERS.register_module(name='RMSpropTF', module=RMSpropTF)

__all__ = ['RMSpropTF']
