"""Registries of cls_kd: children of mmpretrain's, in scope ``cls_kd``.

A config with ``default_scope = 'cls_kd'`` finds everything cls_kd registers
and, through the parent registries, everything mmpretrain and mmengine
register. Users add their own distillers or losses with
``@MODELS.register_module()`` in their own file and ``custom_imports``.
"""
from mmengine.registry import Registry
from mmpretrain import registry as mmpretrain_registry

__all__ = [
    'RUNNERS', 'RUNNER_CONSTRUCTORS', 'LOOPS', 'HOOKS', 'LOG_PROCESSORS',
    'OPTIMIZERS', 'OPTIM_WRAPPERS', 'OPTIM_WRAPPER_CONSTRUCTORS',
    'PARAM_SCHEDULERS', 'DATASETS', 'DATA_SAMPLERS', 'TRANSFORMS', 'MODELS',
    'MODEL_WRAPPERS', 'WEIGHT_INITIALIZERS', 'BATCH_AUGMENTS', 'TASK_UTILS',
    'METRICS', 'EVALUATORS', 'VISUALIZERS', 'VISBACKENDS', 'TAP_SELECTORS',
    'TEACHER_RUNNERS'
]

# Where each registry's own modules live, so that building by name imports
# them lazily (mmengine's ``locations``) even without ``custom_imports``.
_LOCATIONS = {
    'MODELS': ['cls_kd.models'],
    'HOOKS': ['cls_kd.engine'],
    'OPTIM_WRAPPERS': ['cls_kd.engine'],
    'OPTIM_WRAPPER_CONSTRUCTORS': ['cls_kd.engine'],
    'METRICS': ['cls_kd.evaluation'],
    'DATASETS': ['cls_kd.datasets'],
    'LOOPS': ['cls_kd.evaluation'],
}


def _child(name: str) -> Registry:
    """The cls_kd child of one of mmpretrain's registries.

    It also imports the parent's locations: mmengine looks a name up in the
    parents' tables without importing their modules, so with ``default_scope
    = 'cls_kd'`` and nothing else imported (mmpretrain's own tools) e.g.
    ``UniversalVisualizer`` was not found.
    """
    parent = getattr(mmpretrain_registry, name)
    return Registry(
        parent.name,
        parent=parent,
        scope='cls_kd',
        locations=[*_LOCATIONS.get(name, []), *parent._locations])


RUNNERS = _child('RUNNERS')
RUNNER_CONSTRUCTORS = _child('RUNNER_CONSTRUCTORS')
LOOPS = _child('LOOPS')
HOOKS = _child('HOOKS')
LOG_PROCESSORS = _child('LOG_PROCESSORS')
OPTIMIZERS = _child('OPTIMIZERS')
OPTIM_WRAPPERS = _child('OPTIM_WRAPPERS')
OPTIM_WRAPPER_CONSTRUCTORS = _child('OPTIM_WRAPPER_CONSTRUCTORS')
PARAM_SCHEDULERS = _child('PARAM_SCHEDULERS')
DATASETS = _child('DATASETS')
DATA_SAMPLERS = _child('DATA_SAMPLERS')
TRANSFORMS = _child('TRANSFORMS')
MODELS = _child('MODELS')
MODEL_WRAPPERS = _child('MODEL_WRAPPERS')
WEIGHT_INITIALIZERS = _child('WEIGHT_INITIALIZERS')
BATCH_AUGMENTS = _child('BATCH_AUGMENTS')
TASK_UTILS = _child('TASK_UTILS')
METRICS = _child('METRICS')
EVALUATORS = _child('EVALUATORS')
VISUALIZERS = _child('VISUALIZERS')
VISBACKENDS = _child('VISBACKENDS')

# cls_kd's own kinds of objects (no mmpretrain parent): functions that turn a
# tapped module's output into what a loss wants, and runners that execute part
# of a frozen teacher with autograd.
TAP_SELECTORS = Registry(
    'tap selector', scope='cls_kd', locations=['cls_kd.models.taps'])
TEACHER_RUNNERS = Registry(
    'teacher runner', scope='cls_kd', locations=['cls_kd.models.connectors'])
