"""What the inspection tools (``tools/analysis/print_taps.py``,
``visualize_distill.py``, ``loss_shares.py``, ``distiller_summary.py``)
share: building a config's models, running them, loading a student's
weights, and the values a loss term is called with. Turning captured
attention and features into 2-D maps is :mod:`cls_kd.apis.feature_maps`.

A distiller config gives its student and teachers by name; any other model
config (e.g. an mmpretrain classifier) gives one model named ``'model'``.
"""
import copy
import difflib
import inspect
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.model import BaseModel

from cls_kd.errors import DistillerConfigError
from cls_kd.models.distillers import BaseDistiller
from cls_kd.models.taps.attention import check_attention
from cls_kd.models.teachers import expected_input_size
from cls_kd.registry import MODELS
from cls_kd.utils import extract_state_dict, load_model_weights, teacher_specs

__all__ = [
    'build_config_models', 'forward_model', 'config_input_size',
    'load_student_weights', 'last_attention_modules', 'LossInputs',
    'loss_term', 'loss_inputs'
]


def _is_distiller(model_cfg: dict) -> bool:
    cls = model_cfg.get('type')
    cls = MODELS.get(cls) if isinstance(cls, str) else cls
    return isinstance(cls, type) and issubclass(cls, BaseDistiller)


def build_config_models(
        cfg: Config,
        teacher_checkpoints: Optional[Dict[str, str]] = None,
        random_teachers: bool = False
) -> Tuple[nn.Module, Dict[str, nn.Module]]:
    """Build ``cfg.model`` in eval mode, without a dry run.

    Args:
        cfg (Config): A loaded config (:func:`~cls_kd.apis.load_config`).
        teacher_checkpoints (dict, optional): ``teacher name -> checkpoint``
            replacing the config's.
        random_teachers (bool): Build every teacher with random weights
            (for tools that only need shapes). Defaults to False.

    Returns:
        tuple: The built model and its models by name: ``'student'`` and
        each teacher for a distiller, else ``{'model': model}``.
    """
    model_cfg = copy.deepcopy(cfg.model)
    if not _is_distiller(model_cfg):
        if teacher_checkpoints:
            raise ValueError(f'{model_cfg.get("type")} is not a distiller: '
                             f'it has no teacher to load.')
        model = MODELS.build(model_cfg).eval()
        return model, dict(model=model)
    specs = teacher_specs(model_cfg)
    unknown = set(teacher_checkpoints or {}) - set(specs)
    if unknown:
        raise ValueError(f'No teacher {sorted(unknown)} in the config; '
                         f'teachers: {sorted(specs)}.')
    for name, spec in specs.items():
        if random_teachers:
            spec['checkpoint'], spec['random_init'] = None, True
        elif name in (teacher_checkpoints or {}):
            spec['checkpoint'] = teacher_checkpoints[name]
            spec.pop('random_init', None)
    if model_cfg.get('data_preprocessor') is None and cfg.get(
            'data_preprocessor') is not None:
        model_cfg['data_preprocessor'] = copy.deepcopy(cfg.data_preprocessor)
    try:
        # The dry run measures the connector widths a config leaves out.
        distiller = MODELS.build(dict(model_cfg, dry_run=True)).eval()
    except DistillerConfigError as first:
        # A config the dry run refuses (a wrong tap, say) is still shown,
        # when its widths are written out; otherwise the dry run's error.
        try:
            distiller = MODELS.build(dict(model_cfg, dry_run=False)).eval()
        except DistillerConfigError:
            raise first from None
    return distiller, dict(student=distiller.student,
                           **dict(distiller.teachers.items()))


def forward_model(model: nn.Module, inputs: torch.Tensor):
    """One inference forward of a model built from a config (an mmengine
    model in ``'tensor'`` mode, any other module called directly)."""
    with torch.no_grad():
        if isinstance(model, BaseModel):
            return model(inputs, mode='tensor')
        return model(inputs)


def _pipeline_size(pipeline) -> Optional[Tuple[int, int]]:
    """(H, W) of the images a test pipeline produces, when it fixes it:
    its last crop or resize to a given size (``ResizeEdge`` fixes one side
    only and is skipped)."""
    size = None
    for transform in pipeline or []:
        if transform.get('crop_size') is not None:
            value = transform['crop_size']
        elif transform.get('type') == 'Resize':
            value = transform.get('scale')
        else:
            continue
        if isinstance(value, int):
            size = (value, value)
        elif isinstance(value, (tuple, list)) and len(value) == 2:
            size = (int(value[1]), int(value[0]))  # mmcv sizes are (w, h)
    return size


def config_input_size(cfg: Config, model: nn.Module) -> Tuple[int, int]:
    """The image size a config's model runs at: a distiller's
    ``input_size``, a fixed patch embedding's, the test pipeline's, or
    224."""
    size = getattr(model, 'input_size', None) or expected_input_size(model)
    if size is not None:
        return tuple(size)
    for loader in ('test_dataloader', 'val_dataloader'):
        dataset = (cfg.get(loader) or {}).get('dataset') or {}
        size = _pipeline_size(dataset.get('pipeline'))
        if size is not None:
            return size
    return (224, 224)


def load_student_weights(student: nn.Module, path: str) -> int:
    """Load a distiller checkpoint's ``student.*`` weights, or a plain
    (exported) student checkpoint, into ``student``.

    Args:
        student (nn.Module): The distiller's student.
        path (str): The checkpoint.

    Returns:
        int: The number of tensors loaded.

    Raises:
        CheckpointError: The checkpoint does not fit the student (missing,
            unexpected or differently shaped keys).
    """
    # Our own training checkpoints (mmengine meta inside): trusted.
    checkpoint = torch.load(path, map_location='cpu', weights_only=False)
    state = extract_state_dict(checkpoint)
    prefix = 'student.' if any(k.startswith('student.')
                               for k in state) else None
    load_model_weights(student, path, prefix=prefix)
    return len(student.state_dict())


def last_attention_modules(models: Dict[str, nn.Module]) -> List[tuple]:
    """``(model name, module path)`` of the last module of each model whose
    class token attention the ``attn_probs`` selector can reproduce
    (models without one are left out).

    Args:
        models (dict): ``name -> model``.
    """
    found = []
    for owner, model in models.items():
        last = None
        for name, module in model.named_modules():
            try:
                check_attention(module, 'cls')
            except (TypeError, ValueError):
                continue
            last = name
        if last is not None:
            found.append((owner, last))
    return found


@dataclass
class LossInputs:
    """What one loss term of a distiller was called with in one step.

    Args:
        name (str): The term (a key of ``model.losses``).
        loss (nn.Module): Its loss module.
        expressions (dict): ``argument -> expression`` as configured (a
            string, or a list of them), in the order of the loss's
            ``forward`` signature.
        values (dict): ``argument -> value`` the loss module got, in the
            same order.
        value (Tensor): The loss module's output: its own weight (e.g.
            ``loss_weight``) applied, the term's schedule factor not.
    """
    name: str
    loss: nn.Module
    expressions: Dict[str, object]
    values: Dict[str, object]
    value: torch.Tensor


def loss_term(distiller: nn.Module, name: str):
    """The loss term ``name`` of a distiller (a ``LossTerm``).

    Raises:
        ValueError: No such term; the message lists the closest names and
            all of them.
    """
    terms = {term.name: term for term in distiller.wiring.terms}
    if name not in terms:
        close = difflib.get_close_matches(name, list(terms), cutoff=0.75)
        raise ValueError(f'no loss term {name!r} in model.losses; closest: '
                         f'{close}, terms: {sorted(terms)}.')
    return terms[name]


def loss_inputs(distiller: nn.Module, name: str, inputs: torch.Tensor,
                data_samples) -> LossInputs:
    """Run one training step of ``distiller`` restricted to the loss term
    ``name`` (no autograd, the modules' current train/eval modes) and
    return the values its loss module was called with: the taps and
    outputs after their connectors, evaluated by the distiller's own
    wiring.

    Args:
        distiller (BaseDistiller): A built distiller.
        name (str): A loss term of its ``model.losses``.
        inputs (Tensor): A preprocessed batch, (B, 3, H, W).
        data_samples (list[DataSample]): The batch's samples (the student's
            supervised loss of a classification distiller reads labels).

    Raises:
        ValueError: ``name`` is not a loss term (see :func:`loss_term`).
    """
    term = loss_term(distiller, name)
    seen = {}

    def record(module, args, kwargs, output):
        seen.update(values=dict(kwargs), value=output)

    handle = term.module.register_forward_hook(record, with_kwargs=True)
    try:
        with torch.no_grad():
            # The step itself, with this term as the only active one.
            distiller._loss(inputs, data_samples, [(term, 1.0)])
    finally:
        handle.remove()
    order = list(inspect.signature(term.module.forward).parameters)
    args = sorted(term.inputs, key=order.index)
    texts = {
        arg: [str(e) for e in term.inputs[arg]]
        if isinstance(term.inputs[arg], tuple) else str(term.inputs[arg])
        for arg in args
    }
    return LossInputs(name, term.module, texts,
                      {arg: seen['values'][arg] for arg in args},
                      seen['value'])
