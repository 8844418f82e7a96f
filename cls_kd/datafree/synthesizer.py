"""DeepInversion: optimise a batch of images from noise against a frozen
BatchNorm teacher, optionally with ADI's teacher-student competition and
DearKD's boundary-preserving intra-class divergence.

References:
    - Yin et al., "Dreaming to Distill: Data-free Knowledge Transfer via
      DeepInversion", CVPR 2020.
    - Chen et al., "DearKD: Data-Efficient Early Knowledge Distillation for
      Vision Transformers", CVPR 2022.
"""
import difflib
import time
from types import SimpleNamespace
from typing import Callable, Dict, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from cls_kd.models.teachers import renormalisation

from .batching import (
    BatchResult,
    balanced_labels,
    batch_generator,
    phase_lr,
)
from .losses import (
    BNStatsHook,
    adaptive_loss,
    bn_feature_loss,
    intra_divergence_loss,
    l2_prior,
    tv_l2,
)
from .settings import (
    DEFAULT_WEIGHTS,
    check_synthesis_settings,
)

__all__ = [
    'DEFAULT_WEIGHTS', 'balanced_labels', 'batch_generator', 'BatchResult',
    'DeepInversionSynthesizer', 'phase_lr'
]

_INTRA_KEYS = {'diversity', 'boundary', 'margin'}


def _feature_module(model: nn.Module, path: Optional[str]) -> nn.Module:
    if path is None:
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError(
                f'{type(model).__name__} has no nn.Linear classifier: set '
                f'intra_divergence.feature_module to the module whose input '
                f'is the penultimate feature.')
        return linears[-1]
    names = [n for n, _ in model.named_modules() if n]
    if path not in names:
        close = difflib.get_close_matches(path, names, n=5)
        raise ValueError(f'No module {path!r} in the teacher; close matches: '
                         f'{close or names[-5:]}.')
    return model.get_submodule(path)


class DeepInversionSynthesizer:
    """Synthesise labelled images from a frozen BatchNorm teacher.

    Each batch starts from N(0, 1) noise in the teacher's normalised input
    space and runs the ``phases`` in turn (multi-resolution: at a smaller
    ``size`` the full-size images are average-pooled before the teacher),
    each with a fresh Adam and its own learning-rate schedule (a linear
    warm-up, then a cosine; see :func:`phase_lr`). Every iteration
    randomly rolls the images by up to ``jitter`` pixels (scaled by the
    phase's size over the final size) and flips them, then minimises

    ``CE(f(x̂), y) + w_tv·TV + w_l2·‖x̂‖ + w_bn·Σ_l s_l·BN_l``
    ``[+ w_adi·(1 − JS(f, g))] [+ w_div·diversity + w_bnd·boundary]``

    (see :mod:`cls_kd.datafree.losses`) and clips the images to the valid
    pixel range.

    Args:
        teacher (nn.Module): Frozen eval-mode classifier (``mode='tensor'``
            gives logits) with BatchNorm layers.
        mean (Sequence[float]): The teacher's per-channel input mean on the
            0-255 scale, in its input channel order.
        std (Sequence[float]): Its per-channel std.
        to_rgb (bool): Whether the teacher's input is RGB (True) or BGR
            (False, mmpretrain's loading order); images are returned RGB.
            Defaults to False.
        phases (Sequence[dict]): ``dict(size=, iters=)`` in order, each an
            integer >= 1; the last size is the image size and no size may
            exceed it.
        lr (float): Adam's peak lr in each phase. Defaults to 0.25.
        warmup_iters (int): Linear warm-up at the start of each phase, in
            iterations. Defaults to 100, as DeepInversion's code
            (``lr_cosine_policy(lr, 100, iterations)`` per resolution).
        betas (tuple): Adam's betas. Defaults to (0.5, 0.9).
        eps (float): Adam's eps. Defaults to 1e-8.
        jitter (int): Maximal roll, in pixels of the final size. Defaults
            to 30.
        flip (bool): Random horizontal flips. Defaults to True.
        weights (dict): ``tv``, ``l2``, ``bn``, ``first_bn`` (the first BN
            layer's multiplier) and ``adaptive`` (used with a student);
            missing keys take :data:`DEFAULT_WEIGHTS`.
        student (nn.Module, optional): Frozen eval-mode student for ADI's
            competition term. Defaults to None.
        student_preprocessor (dict, optional): The student's ``mean``,
            ``std``, ``to_rgb``; None when it normalises like the teacher.
        adaptive_temperature (float): ADI's ``T``. Defaults to 3.
        intra_divergence (dict, optional): ``dict(diversity=w_div,
            boundary=w_bnd, margin=m)`` and optionally ``feature_module``
            (the teacher module whose input is the penultimate feature;
            default the last ``nn.Linear``). Defaults to None (off).
        grayscale (bool): Optimise one channel shown to the teacher on all
            of its channels (for teachers trained on gray images).
            Defaults to False.
        teacher_size (int, optional): Show the teacher the images resized
            (bicubic) to this size, as a training pipeline that resizes
            them will show them to the student, for data stored smaller
            than the network's input (the digits: 8x8 images, resized to
            32x32 by the pipeline); the images are optimised and written
            at the last phase's size. Defaults to None (no resizing).
        log_interval (int): Log every this many iterations (0: never).
            Defaults to 0.
        log (callable): Takes each log line. Defaults to ``print``.

    Raises:
        SynthesisSettingError: A number out of its range (see
            :func:`check_synthesis_settings`), e.g. a phase with ``iters``
            0 or a NaN ``lr``, named by its argument (``phases.1.iters``).
        ValueError: No ``feature_module`` for the intra-class divergence.
    """

    def __init__(self,
                 teacher: nn.Module,
                 mean: Sequence[float],
                 std: Sequence[float],
                 to_rgb: bool = False,
                 phases: Sequence[dict] = (dict(size=112, iters=2000),
                                           dict(size=224, iters=1000)),
                 lr: float = 0.25,
                 warmup_iters: int = 100,
                 betas: Sequence[float] = (0.5, 0.9),
                 eps: float = 1e-8,
                 jitter: int = 30,
                 flip: bool = True,
                 weights: Optional[dict] = None,
                 student: Optional[nn.Module] = None,
                 student_preprocessor: Optional[dict] = None,
                 adaptive_temperature: float = 3.,
                 intra_divergence: Optional[dict] = None,
                 grayscale: bool = False,
                 teacher_size: Optional[int] = None,
                 log_interval: int = 0,
                 log: Callable[[str], None] = print):
        check_synthesis_settings(dict(
            phases=phases, lr=lr, warmup_iters=warmup_iters, betas=betas,
            eps=eps, jitter=jitter, weights=weights,
            adaptive_temperature=adaptive_temperature,
            intra_divergence=intra_divergence, teacher_size=teacher_size,
            log_interval=log_interval))
        self.size = int(phases[-1]['size'])
        self.teacher, self.student = teacher, student
        self.device = next(teacher.parameters()).device
        self.mean = torch.tensor(
            mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(
            std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.to_rgb, self.grayscale = to_rgb, grayscale
        self.teacher_size = None if teacher_size is None else int(
            teacher_size)
        self.phases = [dict(size=int(p['size']), iters=int(p['iters']))
                       for p in phases]
        self.lr, self.betas, self.eps = lr, tuple(betas), eps
        self.warmup_iters = int(warmup_iters)
        self.jitter, self.flip = jitter, flip
        self.weights = dict(DEFAULT_WEIGHTS, **(weights or {}))
        self.temperature = adaptive_temperature
        self.log_interval, self.log = log_interval, log
        self.student_renorm = None
        if student is not None and student_preprocessor is not None:
            teacher_pre = SimpleNamespace(
                mean=self.mean.view(-1, 1, 1), std=self.std.view(-1, 1, 1),
                to_rgb=to_rgb)
            self.student_renorm = renormalisation(teacher_pre,
                                                  student_preprocessor)
        self.intra = None
        if intra_divergence is not None:
            intra = dict(intra_divergence)
            module = _feature_module(teacher, intra.pop('feature_module',
                                                        None))
            if set(intra) != _INTRA_KEYS:
                raise ValueError(f'intra_divergence must be dict(diversity=, '
                                 f'boundary=, margin=[, feature_module=]); '
                                 f'got {sorted(intra_divergence)}.')
            self.intra = intra
            self._features = None
            self._feature_handle = module.register_forward_pre_hook(
                self._capture_features)
        self.bn_stats = BNStatsHook(teacher)

    def _capture_features(self, module, inputs):
        self._features = inputs[0].flatten(1)

    def close(self) -> None:
        """Remove the hooks from the teacher."""
        self.bn_stats.remove()
        if self.intra is not None:
            self._feature_handle.remove()

    # -- pixel spaces: the optimised images are normalised like the
    # teacher's input, with one channel (normalised like its first) when
    # gray.
    def _image_stats(self):
        channels = slice(0, 1) if self.grayscale else slice(None)
        return self.mean[:, channels], self.std[:, channels]

    def _teacher_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.teacher_size is not None and x.shape[-1] != self.teacher_size:
            x = F.interpolate(x, size=self.teacher_size, mode='bicubic',
                              align_corners=False)
        if not self.grayscale:
            return x
        gray_mean, gray_std = self._image_stats()
        return (x * gray_std + gray_mean - self.mean) / self.std

    def _to_uint8(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self._image_stats()
        return (x * std + mean).round().clamp(0, 255).to(torch.uint8)

    def _from_uint8(self, pixels: torch.Tensor) -> torch.Tensor:
        mean, std = self._image_stats()
        return self._teacher_input((pixels.float() - mean) / std)

    # -- optimisation ------------------------------------------------------
    def _loss_terms(self, inputs: torch.Tensor,
                    labels: torch.Tensor) -> Dict[str, torch.Tensor]:
        logits = self.teacher(inputs, mode='tensor')
        terms = dict(
            ce=F.cross_entropy(logits, labels),
            tv=tv_l2(inputs),
            l2=l2_prior(inputs),
            bn=bn_feature_loss(self.bn_stats.losses,
                               self.weights['first_bn']))
        if self.student is not None:
            student_inputs = inputs
            if self.student_renorm is not None:
                scale, shift, flip = self.student_renorm
                if flip:
                    student_inputs = student_inputs.flip(1)
                student_inputs = torch.addcmul(
                    shift.to(inputs), student_inputs, scale.to(inputs))
            terms['adaptive'] = adaptive_loss(
                logits, self.student(student_inputs, mode='tensor'),
                self.temperature)
        if self.intra is not None:
            terms.update(
                intra_divergence_loss(self._features, logits, labels,
                                      self.intra['margin']))
        return terms

    def _weighted(self, terms: Dict[str, torch.Tensor]) -> torch.Tensor:
        weights = dict(self.weights, ce=1.)
        if self.intra is not None:
            weights.update(diversity=self.intra['diversity'],
                           boundary=self.intra['boundary'])
        return sum(weights[name] * value for name, value in terms.items())

    def _augment(self, x: torch.Tensor, size: int,
                 generator: torch.Generator) -> torch.Tensor:
        if size != self.size:
            x = F.adaptive_avg_pool2d(x, size)
        limit = int(round(self.jitter * size / self.size))
        if limit > 0:
            dy, dx = torch.randint(-limit, limit + 1, (2, ),
                                   generator=generator).tolist()
            x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
        if self.flip and torch.rand(1, generator=generator).item() < 0.5:
            x = x.flip(3)
        return x

    def synthesize(self,
                   labels: torch.Tensor,
                   generator: torch.Generator,
                   name: str = 'batch') -> BatchResult:
        """Optimise one batch.

        Args:
            labels (Tensor): Target classes, N.
            generator (torch.Generator): CPU generator for the initial noise,
                the jitter and the flips (see :func:`batch_generator`).
            name (str): Prefix of the log lines. Defaults to ``'batch'``.

        Returns:
            BatchResult: The images, last loss terms, teacher accuracy and
                the teacher's per-image scores.
        """
        channels = 1 if self.grayscale else self.mean.shape[1]
        labels = labels.to(self.device)
        x = torch.randn((len(labels), channels, self.size, self.size),
                        generator=generator).to(self.device)
        x.requires_grad_(True)
        mean, std = self._image_stats()
        low, high = (0 - mean) / std, (255 - mean) / std
        terms: Dict[str, torch.Tensor] = {}
        for phase, (size, iters) in enumerate(
                (p['size'], p['iters']) for p in self.phases):
            optimizer = torch.optim.Adam([x], lr=self.lr, betas=self.betas,
                                         eps=self.eps)
            start = time.perf_counter()
            for it in range(iters):
                lr = phase_lr(it, iters, self.lr, self.warmup_iters)
                optimizer.param_groups[0]['lr'] = lr
                inputs = self._teacher_input(
                    self._augment(x, size, generator))
                terms = self._loss_terms(inputs, labels)
                total = self._weighted(terms)
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                optimizer.step()
                with torch.no_grad():
                    x.clamp_(low, high)
                if self.log_interval and (it + 1) % self.log_interval == 0:
                    seconds = (time.perf_counter() - start) / (it + 1)
                    self.log(f'{name} phase {phase + 1}/{len(self.phases)} '
                             f'({size}px) iter {it + 1}/{iters}: '
                             f'{_format(terms, total)} lr {lr:.4f} '
                             f'{seconds:.3f} s/iter')
        losses = {k: v.item() for k, v in terms.items()}
        if terms:
            losses['total'] = self._weighted(terms).item()
        with torch.no_grad():
            pixels = self._to_uint8(x.detach())
            logits = self.teacher(self._from_uint8(pixels), mode='tensor')
            predictions = logits.argmax(1)
            accuracy = float((predictions == labels).float().mean())
            target_probs = logits.float().softmax(1).gather(
                1, labels[:, None]).squeeze(1)
        if not self.grayscale and not self.to_rgb:
            pixels = pixels.flip(1)  # BGR -> RGB
        images = pixels.permute(0, 2, 3, 1).cpu().numpy()
        return BatchResult(
            images=images, losses=losses, accuracy=accuracy,
            target_probs=target_probs.cpu().numpy(),
            predictions=predictions.cpu().numpy())


def _format(terms: Dict[str, torch.Tensor], total: torch.Tensor) -> str:
    return ' '.join([f'loss {total.item():.4g}'] +
                    [f'{k} {v.item():.4g}' for k, v in terms.items()])
