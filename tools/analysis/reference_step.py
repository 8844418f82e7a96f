"""A hand-written PyTorch training step: the yardstick of
``benchmark.py --reference``.

It does the work of a cls_kd step for the logit-family (KD, DKD, NKD) and
ViTKD configs the way one would write it by hand: the same mmpretrain
student and teacher modules with the same weights (copied from the built
distiller), the same data preprocessing and Mixup/CutMix, the losses and the
ViTKD connectors written out below, plain forward hooks where features are
needed, one backward, gradient clipping if the config clips, and a
``torch.optim`` AdamW/Adam/SGD with two parameter groups (decay / no decay),
fused on CUDA. No distiller, taps, wiring, mmengine wrapper or data samples
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
        optimizer_cfg (dict): The config's ``optim_wrapper`` (optimizer
            type and settings, ``clip_grad``).
        device (torch.device): Where to run.
        amp_dtype (torch.dtype, optional): Autocast dtype (bfloat16 / float16
            without loss scaling), None for float32.
    """

    def __init__(self, distiller, cfg_model: dict, optimizer_cfg: dict,
                 device: torch.device,
                 amp_dtype: Optional[torch.dtype] = None):
        self.device, self.amp_dtype = device, amp_dtype
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
        self.student = _detached_copy(distiller.student).to(device)
        self.teacher = _detached_copy(teacher).to(device).eval()
        self.teacher.requires_grad_(False)
        self._preprocessing(distiller.data_preprocessor)
        self._supervised(self.student.head)
        self.student_loss_weight = distiller.current_stage(
        ).student_loss_weight
        if self.student_loss_weight is None:
            self.student_loss_weight = distiller.student_loss_weight
        factors = {t.name: f for t, f in distiller.active_terms()}
        self.features: Dict[str, torch.Tensor] = {}
        self.connectors = nn.ModuleDict()
        self.terms = [
            self._term(name, dict(spec), factors[name], cfg_model, distiller)
            for name, spec in cfg_model.get('losses', {}).items()
            if name in factors
        ]
        self.connectors.to(device)
        self.optimizer, self.clip = self._optimizer(optimizer_cfg)
        self._loss_fn = self.forward_losses

    # ---------------------------------------------------------------- build
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
        if kind == 'LabelSmoothLoss' and loss.mode == 'original':
            self.smoothing, self.loss_cls_weight = (loss.label_smooth_val,
                                                    loss.loss_weight)
        elif kind == 'CrossEntropyLoss' and not loss.use_sigmoid and \
                loss.class_weight is None:
            self.smoothing, self.loss_cls_weight = 0.0, loss.loss_weight
        else:
            raise ReferenceUnsupported(
                f'the student\'s loss {kind} is not written out.')

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
                self.connectors[conn] = copy.deepcopy(source.proj)
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
            if type(source).__name__ != 'ViTKDGenerator':
                raise ReferenceUnsupported(f'{name}: connector {conn}')
            self.connectors[conn] = Generator(source)
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
            f'{sorted(LOGIT_INPUTS)}, ViTKDMimicLoss, ViTKDGenerationLoss).')

    def _optimizer(self, wrapper_cfg: dict):
        cfg = dict(wrapper_cfg.get('optimizer', {}))
        kind = str(cfg.pop('type', '')).split('.')[-1]
        classes = dict(AdamW=torch.optim.AdamW, Adam=torch.optim.Adam,
                       SGD=torch.optim.SGD)
        if kind not in classes:
            raise ReferenceUnsupported(f'optimizer {kind} is not written out')
        params = [*self.student.parameters(), *self.connectors.parameters()]
        params = [p for p in params if p.requires_grad]
        groups = [
            dict(params=[p for p in params if p.ndim > 1]),
            dict(params=[p for p in params if p.ndim <= 1], weight_decay=0.)
        ]
        settings = {
            k: v for k, v in cfg.items()
            if k in ('lr', 'betas', 'eps', 'weight_decay', 'momentum',
                     'nesterov', 'dampening')
        }
        if self.device.type == 'cuda':
            settings['fused'] = True
        clip = (wrapper_cfg.get('clip_grad') or {}).get('max_norm')
        return classes[kind](groups, **settings), (clip, params)

    def compile(self, **kwargs) -> None:
        """Compile the whole forward and loss as one function."""
        from cls_kd.utils import cast_numpy_scalars
        cast_numpy_scalars(self.student)
        cast_numpy_scalars(self.teacher)
        self._loss_fn = torch.compile(self.forward_losses, **kwargs)

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
        with torch.no_grad():
            logits_t = self.teacher(x, mode='tensor')
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

    def teacher_forward(self, x: torch.Tensor) -> None:
        with self.autocast(), torch.no_grad():
            self.teacher(x, mode='tensor')

    def step(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        """One training step: preprocess, forward, backward, update."""
        x, targets = self.preprocess(images, labels)
        with self.autocast():
            losses = self._loss_fn(x, targets)
        sum(losses.values()).backward()
        max_norm, params = self.clip
        if max_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, max_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def resident_bytes(self) -> int:
        """Bytes of weights and optimizer state (for the memory report)."""
        tensors = [*self.student.parameters(), *self.teacher.parameters(),
                   *self.connectors.parameters()]
        tensors += [
            v for state in self.optimizer.state.values()
            for v in state.values() if torch.is_tensor(v)
        ]
        return sum(t.numel() * t.element_size() for t in tensors)
