"""A hand-written PyTorch training step: the yardstick of
``benchmark.py --reference``.

It does the work of a cls_kd step for the logit-family (KD, DKD, NKD, DeiT's
distillation token) and ViTKD configs the way one would write it by hand:
the same mmpretrain student and teacher modules with the same weights
(copied from the built distiller), the same data preprocessing and
Mixup/CutMix, the losses and the ViTKD connectors written out below, plain
forward hooks where features are needed, one backward, gradient clipping if
the config clips, and cls_kd's ``torch.optim`` optimizer (AdamW, Adam or
SGD) with its settings and its parameter groups merged where equal, fused
on CUDA. No distiller, taps, wiring, mmengine wrapper or data samples
run in the step. With ``compile`` the whole forward and loss is one
``torch.compile``\\ d function.

Only the standard wiring of each supported loss is known: anything else
(another loss, another input expression, a tap selector other than
``patch_tokens``, a teacher with its own preprocessing, several teachers) is
refused with :class:`ReferenceUnsupported`, so that a comparison is always of
the same work.
"""
import contextlib
import copy
import inspect
import re
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ['ReferenceUnsupported', 'ReferenceStep']

LOGIT_INPUTS = {
    'KDLoss': dict(logits_s='logits_s', logits_t='logits_t'),
    'DKDLoss': dict(logits_s='logits_s', logits_t='logits_t',
                    labels='labels'),
    'NKDLoss': dict(logits_s='logits_s', logits_t='logits_t',
                    labels='labels'),
}
_CALL = re.compile(r'^(\w+)\((\w+)\)$')
_GEN = re.compile(r'^(\w+)\((\w+)\)\.(preds|mask)$')


class ReferenceUnsupported(ValueError):
    """The config does work the reference step does not write out."""


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


# --------------------------------------------------------------- the losses
def soft_cross_entropy(logits, targets):
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def kd(logits_s, logits_t, T):
    log_p_s = F.log_softmax(logits_s.float() / T, dim=1)
    log_p_t = F.log_softmax(logits_t.float() / T, dim=1)
    return T * T * (log_p_t.exp() * (log_p_t - log_p_s)).sum(1).mean()


def non_target(logits, labels):
    """(B, K-1): each row without its label's column."""
    k = logits.shape[1]
    cols = torch.arange(k - 1, device=logits.device)[None]
    return logits.gather(1, cols + (cols >= labels[:, None]).long())


def dkd(logits_s, logits_t, labels, T, alpha, beta):
    z_s, z_t = logits_s.float() / T, logits_t.float() / T

    def binary(z):
        lse = z.logsumexp(1, keepdim=True)
        target = z.gather(1, labels[:, None])
        rest = non_target(z, labels).logsumexp(1, keepdim=True)
        return torch.cat([target, rest], 1) - lse

    def kl(log_p_s, log_p_t):
        return (log_p_t.exp() * (log_p_t - log_p_s)).sum(1).mean()

    tckd = kl(binary(z_s), binary(z_t))
    nckd = kl(F.log_softmax(non_target(z_s, labels), 1),
              F.log_softmax(non_target(z_t, labels), 1))
    return T * T * (alpha * tckd + beta * nckd)


def nkd(logits_s, logits_t, labels, T, gamma):
    z_s, z_t = logits_s.float(), logits_t.float()
    y = labels[:, None]
    target = -(F.softmax(z_t, 1).gather(1, y) *
               F.log_softmax(z_s, 1).gather(1, y)).mean()
    q_t = F.softmax(non_target(z_t, labels) / T, 1)
    log_q_s = F.log_softmax(non_target(z_s, labels) / T, 1)
    return target - gamma * T * T * (q_t * log_q_s).sum(1).mean()


def deit_soft(logits_s, logits_t, T):
    """DeiT's soft term: T² · KL summed over batch and classes, divided by
    their number."""
    log_p_s = F.log_softmax(logits_s.float() / T, dim=1)
    log_p_t = F.log_softmax(logits_t.float() / T, dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum()
    return T * T * kl / logits_s.numel()


def vitkd_mimic(preds, targets):
    return sum(((p.float() - t.float())**2).sum()
               for p, t in zip(preds, targets)) / preds[0].shape[0]


def vitkd_generation(preds, targets, mask, ratio):
    err = ((preds.float() - targets.float())**2).sum(-1)
    return (err * mask).sum() / preds.shape[0] / ratio


class Generator(nn.Module):
    """ViTKD's generation branch written out: align, mask, Conv-ReLU-Conv."""

    def __init__(self, source: nn.Module):
        super().__init__()
        self.mask_ratio = source.mask_ratio
        self.align = copy.deepcopy(source.align)
        self.mask_token = nn.Parameter(source.mask_token.detach().clone())
        self.generation = copy.deepcopy(source.generation)

    def forward(self, x):
        x = self.align(x)
        B, N, D = x.shape
        side = int(N**0.5)
        num_keep = int(N * (1 - self.mask_ratio))
        restore = torch.rand(B, N, device=x.device).argsort(1).argsort(1)
        mask = (restore >= num_keep).to(x.dtype)[..., None]
        x = x * (1 - mask) + self.mask_token.to(x.dtype) * mask
        x = x.transpose(1, 2).reshape(B, D, side, side)
        return self.generation(x).flatten(2).transpose(1, 2), mask[..., 0]


# ----------------------------------------------------------------- the step
def _detached_copy(module: nn.Module) -> nn.Module:
    """A copy of a distiller part without the distiller's hooks."""
    module = copy.deepcopy(module)
    for m in module.modules():
        m._forward_hooks.clear()
        m._forward_pre_hooks.clear()
    return module


class ReferenceStep:
    """The hand-written step for one built cls_kd distiller.

    Args:
        distiller (ClassificationDistiller): Built; its student, teacher and
            connector weights are copied.
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
        if not hasattr(distiller, 'student_loss_weight'):
            raise ReferenceUnsupported(
                f'{type(distiller).__name__}: the reference writes out the '
                f'classification distiller only.')
        if len(distiller.stage_plan.stages) > 1:
            raise ReferenceUnsupported(
                'the config has stages; the reference writes out one.')
        factors = {t.name: f for t, f in distiller.active_terms()}
        read = distiller.teachers_to_run(distiller.active_terms())
        if set(factors) != set(distiller.wiring.names) or not read:
            raise ReferenceUnsupported(
                'some loss terms are off at this epoch; the reference '
                'writes out all of them.')
        # Without a term that reads its logits, cls_kd stops the teacher
        # after its last tapped layer; the reference skips its head.
        self.teacher_head = read[self.teacher_name]
        self.pairs: List[Tuple[nn.Parameter, nn.Parameter]] = []
        self.student = self._copy(distiller.student).to(device)
        self.teacher = _detached_copy(teacher).to(device).eval()
        self.teacher.requires_grad_(False)
        self._preprocessing(distiller.data_preprocessor)
        self._supervised(self.student.head)
        self.student_loss_weight = distiller.current_stage(
        ).student_loss_weight
        if self.student_loss_weight is None:
            self.student_loss_weight = distiller.student_loss_weight
        self.features: Dict[str, torch.Tensor] = {}
        self.connectors = nn.ModuleDict()
        self.terms = [
            self._term(name, dict(spec), factors[name], cfg_model, distiller)
            for name, spec in cfg_model.get('losses', {}).items()
        ]
        self.connectors.to(device)
        self.optimizer, self.clip = self._optimizer(wrapper_cfg, wrapper)
        self._loss_fn = self.forward_losses
        self._teacher_fn = self._teacher_logits

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
        self.num_classes = self.student.head.num_classes
        self.mixes: List[Optional[Tuple[str, dict]]] = []
        augments = getattr(pre, 'batch_augments', None)
        if augments is None:
            return
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

    def _tap(self, name: str, cfg_model: dict, model: nn.Module) -> str:
        """Hook the module of tap ``name``; returns its key in
        :attr:`features`."""
        spec = dict(cfg_model.get('taps', {}).get(name) or {})
        path = spec.get('path')
        if not isinstance(path, str) or spec.get('capture', 'output') != \
                'output' or spec.get('selector') not in (None,
                                                         'patch_tokens'):
            raise ReferenceUnsupported(
                f'tap {name!r} ({spec}): the reference hooks one module '
                f'output, whole or its patch tokens.')
        extra = getattr(model.backbone, 'num_extra_tokens', 0) if \
            spec.get('selector') == 'patch_tokens' else 0

        def hook(module, args, output, name=name, extra=extra):
            self.features[name] = output[:, extra:]

        model.get_submodule(path).register_forward_hook(hook)
        return name

    def _owner(self, tap: str, cfg_model: dict) -> nn.Module:
        who = (cfg_model.get('taps', {}).get(tap) or {}).get(
            'model', 'student')
        return self.student if who == 'student' else self.teacher

    def _term(self, name, spec, factor, cfg_model, distiller):
        kind = str(spec.pop('type', '')).split('.')[-1]
        inputs = spec.pop('inputs', {})
        module = distiller.losses[name]
        if kind in LOGIT_INPUTS:
            if inputs != LOGIT_INPUTS[kind]:
                raise ReferenceUnsupported(
                    f'{name}: {kind} reads {inputs}; the reference knows '
                    f'{LOGIT_INPUTS[kind]}.')
            w, T = module.loss_weight * factor, module.temperature
            if kind == 'KDLoss':
                if module.form != 'kl':
                    raise ReferenceUnsupported(f'{name}: form {module.form}')
                return name, lambda v: w * kd(v['s'], v['t'], T)
            if kind == 'DKDLoss':
                a, b = module.alpha, module.beta
                return name, lambda v: w * dkd(v['s'], v['t'], v['y'], T, a,
                                               b)
            g = module.gamma
            return name, lambda v: w * nkd(v['s'], v['t'], v['y'], T, g)
        if kind == 'DeiTDistillLoss':
            tap = inputs.get('logits_s')
            owner = (cfg_model.get('taps', {}).get(tap) or {}).get(
                'model', 'student')
            if set(inputs) != {'logits_s', 'logits_t'} or inputs[
                    'logits_t'] != 'logits_t' or owner != 'student':
                raise ReferenceUnsupported(
                    f'{name}: DeiTDistillLoss reads {inputs}; the reference '
                    f'knows a student tap (the distillation head) and '
                    f'logits_t.')
            s = self._tap(tap, cfg_model, self.student)
            w, T = module.loss_weight * factor, module.temperature
            if module.mode == 'hard':
                return name, lambda v: w * F.cross_entropy(
                    self.features[s].float(), v['t'].argmax(1))
            return name, lambda v: w * deit_soft(self.features[s], v['t'], T)
        if kind == 'ViTKDMimicLoss':
            preds = [_CALL.match(p) for p in inputs.get('preds', [])]
            targets = list(inputs.get('targets', []))
            if not preds or None in preds or len(preds) != len(targets):
                raise ReferenceUnsupported(f'{name}: inputs {inputs}')
            pairs = []
            for match, target in zip(preds, targets):
                conn, tap = match.groups()
                source = distiller.connectors[conn]
                if type(source).__name__ != 'LinearConnector':
                    raise ReferenceUnsupported(f'{name}: connector {conn}')
                self.connectors[conn] = self._copy(source.proj)
                pairs.append((conn, self._tap(tap, cfg_model,
                                              self._owner(tap, cfg_model)),
                              self._tap(target, cfg_model,
                                        self._owner(target, cfg_model))))
            w = module.alpha * factor
            return name, lambda v: w * vitkd_mimic(
                [self.connectors[c](self.features[s]) for c, s, _ in pairs],
                [self.features[t] for _, _, t in pairs])
        if kind == 'ViTKDGenerationLoss':
            preds = _GEN.match(str(inputs.get('preds')))
            mask = _GEN.match(str(inputs.get('mask')))
            if not (preds and mask and preds.group(3) == 'preds'
                    and preds.groups()[:2] == mask.groups()[:2]
                    and mask.group(3) == 'mask'):
                raise ReferenceUnsupported(f'{name}: inputs {inputs}')
            conn, tap = preds.groups()[:2]
            source = distiller.connectors[conn]
            if type(source).__name__ != 'ViTKDGenerator' or \
                    source.grid_size is not None:
                raise ReferenceUnsupported(
                    f'{name}: connector {conn} (a ViTKDGenerator on a square '
                    f'grid is written out)')
            self.connectors[conn] = self._pair(source, Generator(source))
            s = self._tap(tap, cfg_model, self._owner(tap, cfg_model))
            t = self._tap(inputs['targets'], cfg_model,
                          self._owner(inputs['targets'], cfg_model))
            w, ratio = module.beta * factor, module.mask_ratio

            def generation(v):
                out, m = self.connectors[conn](self.features[s])
                return w * vitkd_generation(out, self.features[t], m, ratio)

            return name, generation
        raise ReferenceUnsupported(
            f'{name}: {kind} is not written out in the reference (it knows '
            f'{sorted(LOGIT_INPUTS)}, DeiTDistillLoss, ViTKDMimicLoss, '
            f'ViTKDGenerationLoss).')

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
        inputs and (B, K) targets on the device, mixed if configured."""
        x = images.to(self.device, non_blocking=True).float()
        if self.to_rgb:
            x = x.flip(1)
        if self.mean is not None:
            x = (x - self.mean) / self.std
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

    def forward_losses(self, x: torch.Tensor,
                       targets: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The losses of one batch: ``loss_cls`` and one per term."""
        self.features.clear()
        logits_t = self._teacher_logits(x)
        logits_s = self.student(x, mode='tensor')
        smooth = targets * (1 - self.smoothing) + self.smoothing / \
            targets.shape[1]
        losses = dict(loss_cls=self.student_loss_weight *
                      self.loss_cls_weight *
                      soft_cross_entropy(logits_s, smooth))
        values = dict(s=logits_s, t=logits_t, y=targets.argmax(1))
        for name, fn in self.terms:
            losses[name] = fn(values)
        return losses

    def _teacher_logits(self, x: torch.Tensor) -> Optional[torch.Tensor]:
        """The teacher without autograd; its head only if a loss reads
        its logits."""
        with torch.no_grad():
            if self.teacher_head:
                return self.teacher(x, mode='tensor')
            self.teacher.extract_feat(x)
            return None

    def teacher_forward(self, x: torch.Tensor) -> None:
        """The teacher alone, as the step runs it (for its share)."""
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
