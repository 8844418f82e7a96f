"""What a config trains, as a flat table of normalised facts.

Two configs that train the same thing give the same facts, however they
spell it: no weight-decay exemption reads the same whether ``paramwise_cfg``
is absent or its multipliers are 1; a warm-up reads as the end point and
start factor of its ``LinearLR`` (``warmup.epochs`` is that ``end``, in
iterations when ``warmup.by_epoch`` is False; stepped per epoch, mmengine
reaches the full lr at ``end - 1``). The
paper-recipe tests (``tests/configs/test_*_recipe.py``) compare these facts
with the official configs' values, and ``tools/analysis/print_recipe.py``
prints them for any config.
"""
import re
from typing import Any, Dict, List, Optional

from .config_paths import teacher_specs

# paramwise_cfg keys whose multiplier applies to one kind of parameter.
_KINDS = {
    'norm_decay_mult': 'norm',
    'bias_decay_mult': 'bias',
    'flat_decay_mult': '1-D',
    'dwconv_decay_mult': 'dwconv',
    'bias_lr_mult': 'bias',
    'dcn_offset_lr_mult': 'dcn_offset',
}
_NAME_GPUS = re.compile(r'_(\d+)xb(\d+)')


def model_student(cfg) -> dict:
    """The student's model dict: ``model.student`` of a distiller, else
    ``model``."""
    model = cfg.model
    return model.get('student') or model


def _multipliers(paramwise: dict, suffix: str) -> Dict[str, float]:
    """Kinds of parameters whose ``*_{suffix}_mult`` is not 1."""
    found = {}
    for key, value in paramwise.items():
        if not key.endswith(f'{suffix}_mult') or key == f'{suffix}_mult':
            continue
        kind = _KINDS.get(key, key[:-len(f'_{suffix}_mult')])
        if kind and value is not None and float(value) != 1.0:
            found[kind] = float(value)
    for name, custom in (paramwise.get('custom_keys') or {}).items():
        value = custom.get(f'{suffix}_mult')
        if value is not None and float(value) != 1.0:
            found[f'key:{name}'] = float(value)
    return found


def _pipeline(cfg, split: str) -> List[dict]:
    loader = cfg.get(f'{split}_dataloader') or {}
    dataset = loader.get('dataset') or {}
    # Wrappers (RepeatDataset, SubsetDataset, ...) hold the real dataset.
    while 'pipeline' not in dataset and 'dataset' in dataset:
        dataset = dataset['dataset']
    return list(dataset.get('pipeline') or [])


def transform(cfg, name: str, split: str = 'train') -> Optional[dict]:
    """The first transform of ``split``'s pipeline named ``name``."""
    for step in _pipeline(cfg, split):
        if step.get('type') == name:
            return step
    return None


def _schedule(cfg) -> Dict[str, Any]:
    facts: Dict[str, Any] = {
        'warmup.epochs': 0, 'warmup.start_factor': None,
        'schedule.type': None, 'schedule.eta_min': None,
        'schedule.milestones': None, 'schedule.gamma': None,
    }
    schedulers = cfg.get('param_scheduler') or []
    if isinstance(schedulers, dict):
        schedulers = [schedulers]
    for step in schedulers:
        kind = step.get('type')
        if kind == 'LinearLR' and step.get('begin', 0) == 0 and len(
                schedulers) > 1:
            facts['warmup.epochs'] = step.get('end')
            facts['warmup.by_epoch'] = step.get('by_epoch', True)
            facts['warmup.start_factor'] = step.get('start_factor', 1 / 3)
            continue
        facts['schedule.type'] = kind
        if 'eta_min' in step:
            facts['schedule.eta_min'] = step['eta_min']
        if 'eta_min_ratio' in step:
            facts['schedule.eta_min_ratio'] = step['eta_min_ratio']
        if 'milestones' in step:
            facts['schedule.milestones'] = list(step['milestones'])
            facts['schedule.gamma'] = step.get('gamma', 0.1)
        facts['schedule.end'] = step.get('end')
    if (facts['schedule.type'] == 'CosineAnnealingLR'
            and facts['schedule.eta_min'] is None
            and 'schedule.eta_min_ratio' not in facts):
        facts['schedule.eta_min'] = 0.  # mmengine's default
    return facts


def recipe_facts(cfg, gpus: Optional[int] = None) -> Dict[str, Any]:
    """Normalised training facts of a resolved mmengine ``Config``.

    Args:
        cfg (Config): a config after ``Config.fromfile`` (``_base_``
            resolved).
        gpus (int, optional): the number of GPUs for ``global_batch``.
            Default: from the file name's ``{N}xb{B}`` tag, else 1.

    Returns:
        dict: fact name -> value (see the keys for the vocabulary).
    """
    student = model_student(cfg)
    backbone = student.get('backbone') or {}
    head = student.get('head') or {}
    wrapper = cfg.get('optim_wrapper') or {}
    optimizer = wrapper.get('optimizer') or {}
    paramwise = wrapper.get('paramwise_cfg') or {}
    facts: Dict[str, Any] = {}

    facts['optimizer.type'] = optimizer.get('type')
    for key in ('lr', 'weight_decay', 'momentum', 'betas', 'eps',
                'nesterov'):
        if key in optimizer:
            value = optimizer[key]
            facts[f'optimizer.{key}'] = (
                tuple(value) if isinstance(value, (list, tuple)) else value)
    facts['decay_exempt'] = _multipliers(paramwise, 'decay')
    facts['lr_mult'] = _multipliers(paramwise, 'lr')
    clip = wrapper.get('clip_grad')
    facts['grad_clip'] = None if not clip else clip.get('max_norm')
    facts['accumulation'] = wrapper.get('accumulative_counts', 1)
    facts.update(_schedule(cfg))
    facts['epochs'] = (cfg.get('train_cfg') or {}).get('max_epochs')

    batch = (cfg.get('train_dataloader') or {}).get('batch_size')
    facts['batch_per_gpu'] = batch
    if gpus is None:
        match = _NAME_GPUS.search(str(cfg.filename or ''))
        gpus = int(match.group(1)) if match else 1
    facts['global_batch'] = (None if batch is None else
                             batch * gpus * facts['accumulation'])
    auto_lr = cfg.get('auto_scale_lr') or {}
    facts['auto_scale_lr.base_batch_size'] = auto_lr.get('base_batch_size')

    rand = transform(cfg, 'RandAugment')
    facts['randaugment'] = None if rand is None else (
        rand.get('num_policies'), rand.get('magnitude_level'),
        rand.get('magnitude_std', 0.), rand.get('total_level', 10))
    auto = transform(cfg, 'AutoAugment')
    facts['autoaugment'] = None if auto is None else auto.get('policies')
    erasing = transform(cfg, 'RandomErasing')
    facts['random_erasing'] = (0. if erasing is None else erasing.get(
        'erase_prob', 0.5))
    crop = transform(cfg, 'RandomResizedCrop')
    facts['train.crop'] = None if crop is None else (
        crop.get('scale'), crop.get('crop_ratio_range', (0.08, 1.0)),
        crop.get('interpolation', 'bilinear'))
    resize = transform(cfg, 'ResizeEdge', 'test') or transform(
        cfg, 'Resize', 'test')
    center = transform(cfg, 'CenterCrop', 'test')
    facts['test.resize'] = None if resize is None else (
        resize.get('scale'), resize.get('interpolation', 'bilinear'))
    facts['test.crop'] = None if center is None else center.get('crop_size')

    augments = {
        a['type']: a.get('alpha')
        for a in ((student.get('train_cfg') or {}).get('augments') or [])
    }
    facts['mixup'] = augments.get('Mixup')
    facts['cutmix'] = augments.get('CutMix')
    loss = head.get('loss') or {}
    facts['head.loss'] = loss.get('type')
    facts['head.use_sigmoid'] = bool(loss.get('use_sigmoid', False))
    facts['label_smoothing'] = (loss.get('label_smooth_val', 0.)
                                if loss.get('type') == 'LabelSmoothLoss' else
                                0.)
    hooks = {h.get('type'): h for h in cfg.get('custom_hooks') or []}
    ema = hooks.get('EMAHook')
    facts['ema'] = None if ema is None else ema.get('momentum', 2e-4)
    facts['sync_bn'] = cfg.get('sync_bn') is not None or 'SyncBN' in str(
        backbone.get('norm_cfg', ''))

    facts['student.backbone'] = backbone.get('type')
    facts['drop_path'] = backbone.get('drop_path_rate', 0.)
    facts['dropout'] = backbone.get('drop_rate', 0.)
    facts['head.dropout'] = head.get('dropout_rate', 0.)
    facts['teacher.train_mode'] = {
        name: bool(spec.get('train_mode', False))
        for name, spec in teacher_specs(cfg.model).items()
    }
    facts['student_loss_weight'] = cfg.model.get('student_loss_weight')
    for name, spec in (cfg.model.get('losses') or {}).items():
        facts[f'loss.{name}.type'] = spec.get('type')
        facts[f'loss.{name}.weight'] = spec.get('loss_weight')
    return facts
