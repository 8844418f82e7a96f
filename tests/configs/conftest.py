"""Fixtures of the config tests: each config file read once per test run,
real-size models built with random teachers (no downloads), and the
checks every built distiller must pass, shared by the modules that build
one so that no model is built twice for them."""
import contextlib
import copy
import math
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.fixture(scope='session')
def load_config():
    """``load_config(path)``: a fresh copy of a config under ``configs/``
    (``path`` relative to the repository or absolute), each file parsed
    once per test run (many tests read every config, and parsing one with
    its ``mmpretrain::`` bases is not free)."""
    cache = {}

    def load(path: str) -> Config:
        path = osp.normpath(osp.join(ROOT, path))
        if path not in cache:
            cache[path] = Config.fromfile(path)
        return copy.deepcopy(cache[path])

    return load


def _offline(cfg):
    model = cfg.model
    for spec in [model.get('teacher')] + list(
            (model.get('teachers') or {}).values()):
        if spec:
            spec['checkpoint'], spec['random_init'] = None, True
    return cfg


@pytest.fixture(scope='session')
def offline():
    """``offline(cfg)``: no downloads in tests, the config's teachers keep
    random weights, on purpose (returns ``cfg``, changed in place)."""
    return _offline


@pytest.fixture(scope='session')
def build_offline():
    """``build_offline(cfg)``: the config's model built as a training run
    builds it, its teachers random (no checkpoint, no download), with its
    build-time dry run.

    Returns ``(model, dry_run_losses)``: the losses that the dry run
    computed (the student's own and every distillation term, on its dummy
    batch of two images at the training size), read as the distiller
    returned them; empty for a model that is not a distiller.
    """

    def build(cfg):
        from cls_kd.registry import MODELS
        model_cfg = cfg.model
        if 'Distiller' in model_cfg.type:
            _offline(cfg)
        model_cfg.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
        losses = {}
        with _recording_losses(model_cfg.type, losses):
            model = MODELS.build(model_cfg)
        return model, losses

    return build


@contextlib.contextmanager
def _recording_losses(model_type: str, found: dict):
    """Keep what ``supervised_losses`` and ``distill_losses`` (the
    distiller's public extension points) return while a distiller of
    ``model_type`` is built: its dry run calls each once with every term
    active."""
    from cls_kd.registry import MODELS
    cls = MODELS.get(model_type)
    if cls is None or not hasattr(cls, 'distill_losses'):
        yield
        return
    with pytest.MonkeyPatch.context() as patch:
        for name in ('supervised_losses', 'distill_losses'):
            original = getattr(cls, name)

            def wrapped(self, *args, _original=original, **kwargs):
                out = _original(self, *args, **kwargs)
                found.update(out)
                return out

            patch.setattr(cls, name, wrapped)
        yield


def _names(module, prefix):
    return {f'{prefix}.{n}' for n, _ in module.named_parameters()}


def _batches(shape: str):
    """The leading dimension of every tensor in a described capture
    (``'Tensor(2, 197, 192)'``, ``'list[Tensor(2, ...), ...]'``)."""
    return [int(n) for n in re.findall(r'Tensor\((\d+)', shape)]


@pytest.fixture(scope='session')
def check_distiller():
    """``check_distiller(cfg, model, dry_run_losses)``: what every built
    distiller must be.

    - its trainable parameters are exactly the student's, the connectors'
      and those a loss holds (FitNets' regressor), by name, all of them
      trainable;
    - each teacher is frozen (no parameter requires grad), stays in eval
      mode when the distiller trains unless its config follows ``train()``
      (``train_mode``), and lies outside the module tree
      (not in ``parameters()``, hence in no optimizer and no checkpoint);
    - the dry run captured every tap of the config, each a batch of the
      dry run's two images;
    - the dry run's losses (the student's and every term of the config)
      are finite.
    """

    def check(cfg, model, losses):
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        student = _names(model.student, 'student')
        # Connectors, and a loss's own regressor (FitNets' HintLoss).
        trained = _names(model.connectors, 'connectors') | _names(
            model.losses, 'losses')
        assert student, 'the student has no parameters'
        assert trainable == student | trained, (
            f'trainable besides student, connectors and losses: '
            f'{sorted(trainable - student - trained)[:5]}; frozen in '
            f'them: {sorted((student | trained) - trainable)[:5]}')
        assert not any(n.startswith('teacher') for n, _ in
                       model.named_parameters())
        ours = {id(p) for p in model.parameters()}
        teachers = dict(model.teachers.items())
        specs = cfg.model.get('teachers') or dict(teacher=cfg.model.teacher)
        assert set(teachers) == set(specs)
        for name, teacher in teachers.items():
            params = list(teacher.parameters())
            assert params, name
            assert not any(p.requires_grad for p in params), name
            assert not ours & {id(p) for p in params}, name
        # Eval mode whatever the distiller's mode, unless a teacher's config
        # follows train() (paper configs that reproduce the published code).
        model.train()
        for name, teacher in teachers.items():
            follows = bool(specs[name].get('train_mode'))
            assert teacher.training is follows, name
        model.eval()

        taps = set(cfg.model.get('taps') or {})
        shapes = model.captures.shapes
        assert set(shapes) == taps
        for tap, shape in shapes.items():
            batches = _batches(shape)
            assert batches and set(batches) == {2}, (tap, shape)

        terms = set(cfg.model.get('losses') or {})
        assert terms <= set(losses), sorted(terms - set(losses))
        for name, value in losses.items():
            if torch.is_tensor(value):
                assert torch.isfinite(value).all(), (name, value)
            else:
                assert math.isfinite(value), (name, value)

    return check
