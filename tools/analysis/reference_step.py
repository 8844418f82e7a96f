"""A hand-written PyTorch training step: the yardstick of
``benchmark.py --reference``.

It does the work of a cls_kd step the way one would write it by hand: the
same mmpretrain student and teacher modules with the same weights (copied
from the built distiller; the teacher in the distiller's mode), the same
data preprocessing and Mixup/CutMix, plain forward hooks where features are
needed, the loss terms and the connectors called directly (the terms of
each method are written out in ``reference_steps/``: the logit family
(KD, DKD, NKD, DeiT's distillation token), ViTKD, ScaleKD, AttnDistill and
DearKD), one backward, gradient clipping if the config clips, and cls_kd's
``torch.optim`` optimizer (AdamW, Adam or SGD) with its settings and its
parameter groups merged where equal, fused on CUDA. No distiller, taps,
wiring, mmengine wrapper or data samples run in the step. It writes out the
stage and the terms the distiller runs at its current progress (e.g. after
DearKD's switch: the student's loss alone, no teacher). With ``compile``
the whole forward and loss is one ``torch.compile``\\ d function.

Only the standard wiring of each supported loss is known: anything else
(another loss, another input expression, a tap selector other than the
whole output, ``patch_tokens``, ``cls_token`` or class-token attention rows,
a teacher with its own preprocessing, several teachers) is refused with
:class:`ReferenceUnsupported`, so that a comparison is always of the same
work.
"""
import contextlib
import copy
import inspect
import os.path as osp
import sys
from functools import partial
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
try:
    from reference_steps import BUILDERS, ReferenceUnsupported
    from reference_steps.attndistill import (
        CLS_ROW,
        check_attention,
        cls_attention_row,
    )
finally:
    sys.path.pop(0)

__all__ = ['ReferenceUnsupported', 'ReferenceStep', 'resident_bytes']

TAP_KEYS = {'model', 'path', 'selector', 'capture'}


def _precision(wrapper) -> Optional[torch.dtype]:
    """The autocast dtype of cls_kd's optimizer wrapper (None: float32);
    loss scaling (mmengine's ``AmpOptimWrapper``) is not written out."""
    if not hasattr(wrapper, 'cast_dtype'):
        return None
    if 'Autocast' not in type(wrapper).__name__:
        raise ReferenceUnsupported(
            f'{type(wrapper).__name__} scales the loss; the reference writes '
            f'out autocast without scaling (bfloat16: AutocastOptimWrapper).')
    return wrapper.cast_dtype


def soft_cross_entropy(logits, targets):
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def _output(module, args, output):
    return output


def _cls_token(module, args, output):
    return output[:, 0]  # B, C


def _patch_tokens(module, args, output, extra):
    return output[:, extra:]  # B, N, C


def _cls_attention(module, args, output):
    return cls_attention_row(module, args[0])  # B, heads, N


# Tap selectors by name (and CLS_ROW): fn(module, args, output).
SELECTORS = {None: _output, 'output': _output, 'cls_token': _cls_token}


def _detached_copy(module: nn.Module) -> nn.Module:
    """A copy of a distiller part without the distiller's hooks."""
    module = copy.deepcopy(module)
    for m in module.modules():
        m._forward_hooks.clear()
        m._forward_pre_hooks.clear()
    return module


class ReferenceStep:
    """The hand-written step for one built cls_kd distiller.

    The per-method term builders (``reference_steps.BUILDERS``) use
    :meth:`tap`, :meth:`owner`, :meth:`selector`, :meth:`connector`,
    :meth:`original_connector`, :attr:`features` and :attr:`teacher`.

    Args:
        distiller (ClassificationDistiller | LabelFreeDistiller): Built; its
            student, teacher and connector weights are copied.
        cfg_model (dict): The model config (taps and loss inputs are read
            from it).
        wrapper_cfg (dict): The config's ``optim_wrapper`` (``clip_grad``,
            ``accumulative_counts``).
        wrapper (OptimWrapper): cls_kd's optimizer wrapper, built for the
            distiller: the reference takes its optimizer class, settings and
            parameter groups (merged where equal), and its precision.
        device (torch.device): Where to run.
    """

    def __init__(self, distiller, cfg_model: dict, wrapper_cfg: dict,
                 wrapper, device: torch.device):
        self.device = device
        self.amp_dtype = _precision(wrapper)
        teachers = dict(distiller.teachers.items())
        if len(teachers) != 1:
            raise ReferenceUnsupported(
                f'the reference runs one teacher; this config has '
                f'{sorted(teachers)}.')
        (self.teacher_name, teacher), = teachers.items()
        probe = torch.zeros(1, 3, 4, 4)
        if distiller.teachers.inputs_for(self.teacher_name, probe) \
                is not probe:
            raise ReferenceUnsupported(
                'the teacher has its own preprocessing (size or '
                'normalisation); the reference feeds it the student\'s input.')
        kind = type(distiller).__name__
        self.classification = hasattr(distiller, 'student_loss_weight')
        if not self.classification and kind != 'LabelFreeDistiller':
            raise ReferenceUnsupported(
                f'{kind}: the reference writes out the classification and '
                f'the label-free distiller only.')
        active = distiller.active_terms()
        if not active and not self.classification:
            raise ReferenceUnsupported('no loss term is active: nothing to '
                                       'train.')
        # The teacher runs while a term reads it, its head while a term
        # reads its logits (else cls_kd stops after its last tap and the
        # reference skips the head).
        read = distiller.teachers_to_run(active)
        self.run_teacher = self.teacher_name in read
        self.teacher_head = read.get(self.teacher_name, False)
        self.pairs: List[Tuple[nn.Parameter, nn.Parameter]] = []
        self.student = self._copy(distiller.student).to(device)
        self.teacher = _detached_copy(teacher).to(device).train(
            teacher.training)
        self.teacher.requires_grad_(False)
        self._preprocessing(distiller.data_preprocessor)
        if self.classification:
            self._supervised(self.student.head)
            self.student_loss_weight = distiller.current_stage(
            ).student_loss_weight
            if self.student_loss_weight is None:
                self.student_loss_weight = distiller.student_loss_weight
        self.features: Dict[str, torch.Tensor] = {}
        self._teacher_running = False
        self._taps = dict(cfg_model.get('taps') or {})
        self._hooked = set()
        self._originals = distiller.connectors
        self.connectors = nn.ModuleDict()
        specs = cfg_model.get('losses') or {}
        self.terms = [(term.name,
                       self._term(term.name, dict(specs[term.name]),
                                  term.module, factor))
                      for term, factor in active]
        # Connectors no active term uses are still trained by the config's
        # optimizer (they get no gradient).
        for name, module in distiller.connectors.items():
            if name not in self.connectors and any(
                    p.requires_grad for p in module.parameters()):
                self.connector(name, type(module).__name__)
        self._originals = None
        self.connectors.to(device)
        self.optimizer, self.clip = self._optimizer(wrapper_cfg, wrapper)
        self._loss_fn = self.forward_losses
        self._teacher_fn = self._teacher_logits

    # ------------------------------------------- for the term builders
    def owner(self, tap: Optional[str]) -> Optional[str]:
        """``'student'`` or the teacher's name for tap ``tap``; None if the
        config has no such tap."""
        if tap not in self._taps:
            return None
        return (self._taps[tap] or {}).get('model', 'student')

    def selector(self, tap: str) -> Union[None, str, dict]:
        """The selector of tap ``tap`` as the config gives it."""
        selector = (self._taps.get(tap) or {}).get('selector')
        return dict(selector) if isinstance(selector, dict) else selector

    def tap(self, name: str) -> str:
        """Hook the module of tap ``name`` (once); returns its key in
        :attr:`features`."""
        if name in self._hooked:
            return name
        spec = dict(self._taps.get(name) or {})
        path, selector = spec.get('path'), self.selector(name)
        owner = self.owner(name)
        if (owner is None or not isinstance(path, str) or set(spec) - TAP_KEYS
                or spec.get('capture', 'output') != 'output'):
            raise ReferenceUnsupported(
                f'tap {name!r} ({spec}): the reference hooks the output of '
                f'one module.')
        model = self.student if owner == 'student' else self.teacher
        module = model.get_submodule(path)
        if selector == CLS_ROW:
            check_attention(module)
            select = _cls_attention
        elif selector == 'patch_tokens':
            select = partial(_patch_tokens,
                             extra=model.backbone.num_extra_tokens)
        elif selector in SELECTORS:
            select = SELECTORS[selector]
        else:
            raise ReferenceUnsupported(
                f'tap {name!r}: selector {selector!r} is not written out '
                f"(the whole output, 'patch_tokens', 'cls_token', "
                f'{CLS_ROW}).')
        student = owner == 'student'

        def hook(module, args, output):
            # A teacher tap records the teacher's forward, not the teacher
            # modules that ScaleKD's TPP path runs.
            if student or self._teacher_running:
                self.features[name] = select(module, args, output)

        module.register_forward_hook(hook)
        self._hooked.add(name)
        return name

    def original_connector(self, name: str,
                           kinds: Union[str, Tuple[str, ...]]) -> nn.Module:
        """The distiller's connector ``name``, which must be of one of the
        class names ``kinds``."""
        kinds = (kinds, ) if isinstance(kinds, str) else kinds
        module = self._originals[name] if name in self._originals else None
        if type(module).__name__ not in kinds:
            raise ReferenceUnsupported(
                f'connector {name!r} is a {type(module).__name__}; the '
                f'reference writes out {" or ".join(kinds)} there.')
        return module

    def connector(self, name: str, kinds: Union[str, Tuple[str, ...]],
                  make=None) -> nn.Module:
        """A hook-free copy of the distiller's connector ``name`` (or
        ``make(connector)``, a module with its parameter names), made once
        and paired."""
        if name not in self.connectors:
            original = self.original_connector(name, kinds)
            copied = make(original) if make else _detached_copy(original)
            self.connectors[name] = self._pair(original, copied)
        return self.connectors[name]

    # ---------------------------------------------------------------- build
    def _pair(self, original: nn.Module, copied: nn.Module) -> nn.Module:
        """Pair the parameters of a copy with the distiller's, by name (the
        optimizer groups follow the distiller's)."""
        mine = dict(copied.named_parameters())
        self.pairs.extend(
            (param, mine[name]) for name, param in original.named_parameters())
        return copied

    def _copy(self, module: nn.Module) -> nn.Module:
        """A hook-free copy of a distiller part, paired."""
        return self._pair(module, _detached_copy(module))

    def _preprocessing(self, pre):
        self.mean = pre.mean.to(self.device) if pre._enable_normalize \
            else None
        self.std = pre.std.to(self.device) if pre._enable_normalize else None
        self.to_rgb = bool(pre.to_rgb)
        self.num_classes = self.student.head.num_classes \
            if self.classification else None
        self.mixes: List[Optional[Tuple[str, dict]]] = []
        augments = getattr(pre, 'batch_augments', None)
        if augments is None:
            return
        if not self.classification:
            raise ReferenceUnsupported('batch augments without labels are '
                                       'not written out.')
        self.mix_probs = augments.probs  # None: uniform
        for aug in augments.augments:
            kind = type(aug).__name__
            if aug is None:  # "no augment", when probs sum below 1
                self.mixes.append(None)
            elif kind == 'Mixup':
                self.mixes.append(('mixup', dict(alpha=aug.alpha)))
            elif kind == 'CutMix' and aug.cutmix_minmax is None:
                self.mixes.append(
                    ('cutmix', dict(alpha=aug.alpha,
                                    correct=aug.correct_lam)))
            else:
                raise ReferenceUnsupported(
                    f'batch augment {kind} is not written out.')

    def _supervised(self, head):
        loss = head.loss_module
        kind = type(loss).__name__
        ce = loss.ce if kind == 'LabelSmoothLoss' else loss
        plain = (getattr(ce, 'use_sigmoid', True) is False
                 and getattr(ce, 'class_weight', 0) is None
                 and getattr(loss, 'reduction', None) == 'mean')
        if kind == 'LabelSmoothLoss' and loss.mode == 'original' and plain:
            self.smoothing, self.loss_cls_weight = (loss.label_smooth_val,
                                                    loss.loss_weight)
        elif kind == 'CrossEntropyLoss' and plain:
            self.smoothing, self.loss_cls_weight = 0.0, loss.loss_weight
        else:
            raise ReferenceUnsupported(
                f'the student\'s loss {kind} is not written out (softmax '
                f'cross-entropy, optionally label-smoothed in the original '
                f'mode, mean over the batch).')

    def _term(self, name, spec, module, factor):
        build = BUILDERS.get(type(module).__name__)
        if build is None:
            raise ReferenceUnsupported(
                f'{name}: {type(module).__name__} is not written out in the '
                f'reference (it knows {sorted(BUILDERS)}).')
        return build(self, name, module, dict(spec.get('inputs') or {}),
                     factor)

    def _optimizer(self, wrapper_cfg: dict, wrapper):
        """cls_kd's optimizer class and settings, with its groups mapped to
        the copies and merged where their settings are equal (a handful, as
        one writes them by hand); fused on CUDA where torch has it."""
        if wrapper_cfg.get('accumulative_counts', 1) != 1:
            raise ReferenceUnsupported('gradient accumulation is not '
                                       'written out.')
        clip = dict(wrapper_cfg.get('clip_grad') or {})
        if clip and (clip.pop('type', 'norm') != 'norm'
                     or set(clip) - {'max_norm', 'norm_type'}):
            raise ReferenceUnsupported(f'clip_grad {wrapper_cfg.clip_grad} '
                                       f'is not written out.')
        optimizer = wrapper.optimizer
        kind = type(optimizer)
        if kind not in (torch.optim.AdamW, torch.optim.Adam, torch.optim.SGD):
            raise ReferenceUnsupported(
                f'optimizer {kind.__name__} is not written out.')
        copies = dict(self.pairs)
        groups = []
        for group in optimizer.param_groups:
            if any(p not in copies for p in group['params']):
                raise ReferenceUnsupported(
                    'the optimizer trains parameters the reference does not '
                    'have.')
            settings = {k: v for k, v in group.items() if k != 'params'}
            params = [copies[p] for p in group['params']]
            for merged in groups:
                if merged[0] == settings:
                    merged[1].extend(params)
                    break
            else:
                groups.append((settings, params))
        accepted = inspect.signature(kind.__init__).parameters
        defaults = {
            k: v
            for k, v in optimizer.defaults.items() if k in accepted
        }
        chosen = {'fused', 'foreach'} & set(wrapper_cfg.get('optimizer', {}))
        if self.device.type == 'cuda' and not chosen:
            # A config's own fused/foreach choice is kept, as cls_kd does.
            defaults.update(fused=True, foreach=None)
        params = [p for _, group in groups for p in group]
        fast = dict(fused=defaults.get('fused'),
                    foreach=defaults.get('foreach'))
        optimizer = kind(
            [dict(settings, params=group, **fast)
             for settings, group in groups], **defaults)
        return optimizer, (clip, params)

    def compile(self, **kwargs) -> None:
        """Compile the whole forward and loss as one function, and the
        teacher alone (for its share)."""
        self._loss_fn = torch.compile(self.forward_losses, **kwargs)
        self._teacher_fn = torch.compile(self._teacher_logits, **kwargs)

    # ------------------------------------------------------------------ run
    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def preprocess(self, images: torch.Tensor, labels: torch.Tensor):
        """uint8 (B, 3, H, W) and int labels (B, ) on the CPU -> normalised
        inputs and (B, K) targets on the device, mixed if configured (no
        targets for a label-free student)."""
        x = images.to(self.device, non_blocking=True).float()
        if self.to_rgb:
            x = x.flip(1)
        if self.mean is not None:
            x = (x - self.mean) / self.std
        if not self.classification:
            return x, None
        y = F.one_hot(labels.to(self.device, non_blocking=True),
                      self.num_classes).float()
        if not self.mixes:
            return x, y
        mix = self.mixes[np.random.choice(len(self.mixes), p=self.mix_probs)]
        if mix is None:
            return x, y
        kind, opts = mix
        lam = np.random.beta(opts['alpha'], opts['alpha'])
        index = torch.randperm(x.shape[0])
        if kind == 'mixup':
            x = lam * x + (1 - lam) * x[index]
        else:
            h, w = x.shape[-2:]
            ratio = np.sqrt(1 - lam)
            ch, cw = int(h * ratio), int(w * ratio)
            cy, cx = np.random.randint(0, h), np.random.randint(0, w)
            y1, y2 = np.clip(cy - ch // 2, 0, h), np.clip(cy + ch // 2, 0, h)
            x1, x2 = np.clip(cx - cw // 2, 0, w), np.clip(cx + cw // 2, 0, w)
            if opts['correct']:
                lam = 1 - (y2 - y1) * (x2 - x1) / float(h * w)
            x = x.clone()
            x[:, :, y1:y2, x1:x2] = x[index, :, y1:y2, x1:x2]
        return x, lam * y + (1 - lam) * y[index]

    def forward_losses(
            self, x: torch.Tensor,
            targets: Optional[torch.Tensor]) -> Dict[str, torch.Tensor]:
        """The losses of one batch: ``loss_cls`` (classification) and one
        per active term."""
        self.features.clear()
        values = {}  # what the terms read, and their per-step cache
        if self.run_teacher:
            values['logits_t'] = self._teacher_logits(x)
        losses = {}
        if self.classification:
            logits_s = self.student(x, mode='tensor')
            smooth = targets * (1 - self.smoothing) + self.smoothing / \
                targets.shape[1]
            losses['loss_cls'] = self.student_loss_weight * \
                self.loss_cls_weight * soft_cross_entropy(logits_s, smooth)
            values.update(logits_s=logits_s, labels=targets.argmax(1))
        elif hasattr(self.student, 'extract_feat'):
            self.student.extract_feat(x)
        else:  # a bare backbone
            self.student(x)
        for name, fn in self.terms:
            losses[name] = fn(values)
        return losses

    def _teacher_logits(self, x: torch.Tensor) -> Optional[torch.Tensor]:
        """The teacher without autograd; its head only if a loss reads
        its logits."""
        self._teacher_running = True  # its taps record
        try:
            with torch.no_grad():
                if self.teacher_head:
                    return self.teacher(x, mode='tensor')
                self.teacher.extract_feat(x)
                return None
        finally:
            self._teacher_running = False

    def teacher_forward(self, x: torch.Tensor) -> None:
        """The teacher alone, as the step runs it (for its share; nothing
        in a stage that does not run it)."""
        if self.run_teacher:
            with self.autocast():
                self._teacher_fn(x)

    def step(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        """One training step: preprocess, forward, backward, update."""
        x, targets = self.preprocess(images, labels)
        with self.autocast():
            losses = self._loss_fn(x, targets)
        sum(losses.values()).backward()
        clip, params = self.clip
        if clip:
            torch.nn.utils.clip_grad_norm_(params, **clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.features.clear()  # not kept alive into the next step

    def resident_bytes(self) -> int:
        """Bytes of weights and optimizer state (for the memory report)."""
        return resident_bytes([self.student, self.teacher, self.connectors],
                              self.optimizer)


def resident_bytes(modules, optimizer) -> int:
    """Bytes of the parameters of ``modules`` and of ``optimizer``'s
    state."""
    tensors = [p for m in modules for p in m.parameters()]
    tensors += [
        v for state in optimizer.state.values() for v in state.values()
        if torch.is_tensor(v)
    ]
    return sum(t.numel() * t.element_size() for t in tensors)
