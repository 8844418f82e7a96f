"""Losses of data-free image synthesis: DeepInversion's image priors and
BatchNorm statistics loss, ADI's teacher-student competition and DearKD's
boundary-preserving intra-class divergence.

References:
    - Yin et al., "Dreaming to Distill: Data-free Knowledge Transfer via
      DeepInversion", CVPR 2020 (DeepInversion, ADI).
    - Chen et al., "DearKD: Data-Efficient Early Knowledge Distillation for
      Vision Transformers", CVPR 2022 (intra-divergence).
"""
from typing import Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = [
    'tv_l2', 'l2_prior', 'BNStatsHook', 'bn_feature_loss', 'adaptive_loss',
    'intra_divergence_loss'
]


def tv_l2(x: torch.Tensor) -> torch.Tensor:
    """DeepInversion's total-variation prior.

    ``‖x[..., :, :-1] − x[..., :, 1:]‖₂ + ‖x[..., :-1, :] − x[..., 1:, :]‖₂
    + ‖x[..., 1:, :-1] − x[..., :-1, 1:]‖₂
    + ‖x[..., :-1, :-1] − x[..., 1:, 1:]‖₂``: the L2 norms, each over the
    whole batch, of the horizontal, vertical and both diagonal neighbour
    differences.

    Args:
        x (Tensor): Images, N x C x H x W.

    Returns:
        Tensor: A scalar.
    """
    horizontal = x[..., :, :-1] - x[..., :, 1:]
    vertical = x[..., :-1, :] - x[..., 1:, :]
    anti_diagonal = x[..., 1:, :-1] - x[..., :-1, 1:]
    diagonal = x[..., :-1, :-1] - x[..., 1:, 1:]
    return (horizontal.norm() + vertical.norm() + anti_diagonal.norm() +
            diagonal.norm())


def l2_prior(x: torch.Tensor) -> torch.Tensor:
    """``‖x‖₂`` over the whole batch (DeepInversion's L2 image prior; its
    code averages per-image norms instead, which differs by a batch-size
    dependent factor only)."""
    return x.norm()


class BNStatsHook:
    """Forward hooks on every BatchNorm layer with running statistics that
    measure how far a batch's feature statistics are from them.

    For layer ``l`` with input ``a`` (N x C x ...), ``μ`` and ``σ²`` are the
    per-channel mean and biased variance over every dimension but the
    channels, and ``loss_l = ‖μ − running_mean‖₂ + ‖σ² − running_var‖₂``.
    The model is only observed: in eval mode its running statistics never
    change. Use as a context manager or call :meth:`remove`.

    Args:
        model (nn.Module): The (frozen, eval-mode) network.

    Raises:
        ValueError: The model has no BatchNorm layer with running stats.
    """

    def __init__(self, model: nn.Module):
        self.names: List[str] = []
        self._handles = []
        for name, module in model.named_modules():
            if isinstance(module, _BatchNorm) and \
                    module.running_mean is not None:
                self._handles.append(
                    module.register_forward_hook(self._hook(len(self.names))))
                self.names.append(name)
        if not self.names:
            raise ValueError(
                f'{type(model).__name__} has no BatchNorm layer with running '
                f'statistics: the BN statistics loss needs one.')
        # Each forward pass of the model starts with no statistics.
        self._handles.append(
            model.register_forward_pre_hook(lambda *_: self._clear()))
        self._clear()

    @property
    def losses(self) -> List[torch.Tensor]:
        """``loss_l`` of each layer, in module order, from the last forward
        pass of the model.

        Raises:
            RuntimeError: A layer did not run in that pass.
        """
        missing = [n for n, v in zip(self.names, self._losses) if v is None]
        if missing:
            raise RuntimeError(
                f'BatchNorm layers {missing} did not run in the last forward '
                f'pass: their statistics loss is undefined.')
        return list(self._losses)

    def _clear(self) -> None:
        self._losses: List[Optional[torch.Tensor]] = [None] * len(self.names)

    def _hook(self, index: int):

        def hook(module, inputs, output):
            a = inputs[0]
            dims = [d for d in range(a.dim()) if d != 1]
            mean = a.mean(dim=dims)
            var = a.var(dim=dims, unbiased=False)
            self._losses[index] = (mean - module.running_mean).norm() + \
                (var - module.running_var).norm()

        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def bn_feature_loss(per_layer: List[torch.Tensor],
                    first_bn_multiplier: float = 10.) -> torch.Tensor:
    """DeepInversion's feature-distribution regulariser
    ``Σ_l s_l · loss_l`` with ``s_0 = first_bn_multiplier`` for the first
    BatchNorm in module order and ``s_l = 1`` for the others.

    Args:
        per_layer (list[Tensor]): The scalar ``loss_l`` of each layer, in
            module order (:attr:`BNStatsHook.losses` after a forward pass).
        first_bn_multiplier (float): ``s_0``. Defaults to 10.

    Returns:
        Tensor: A scalar.
    """
    if not per_layer:
        raise ValueError('No BatchNorm statistics: the list is empty.')
    return first_bn_multiplier * per_layer[0] + sum(per_layer[1:])


def adaptive_loss(t_logits: torch.Tensor,
                  s_logits: torch.Tensor,
                  temperature: float = 3.) -> torch.Tensor:
    """ADI's competition term ``1 − clamp(JS(p ‖ q), 0, 1)``.

    ``p = softmax(t / T)``, ``q = softmax(s / T)``, ``m = (p + q) / 2`` and
    ``JS = ½ KL(p ‖ m) + ½ KL(q ‖ m)`` averaged over the batch: minimising
    it makes images on which teacher and student disagree. (DeepInversion's
    code computes ``KL(m ‖ ·)`` on clamped probabilities; we use the
    textbook Jensen-Shannon divergence.)

    Args:
        t_logits (Tensor): Teacher logits, N x K.
        s_logits (Tensor): Student logits, N x K.
        temperature (float): ``T``. Defaults to 3.

    Returns:
        Tensor: A scalar.
    """
    if t_logits.shape != s_logits.shape:
        raise ValueError(f'Teacher logits {tuple(t_logits.shape)} and '
                         f'student logits {tuple(s_logits.shape)} differ.')
    log_p = F.log_softmax(t_logits / temperature, dim=1)
    log_q = F.log_softmax(s_logits / temperature, dim=1)
    log_m = torch.logaddexp(log_p, log_q) - torch.log(
        torch.tensor(2., device=log_p.device, dtype=log_p.dtype))
    kl_pm = (log_p.exp() * (log_p - log_m)).sum(dim=1)
    kl_qm = (log_q.exp() * (log_q - log_m)).sum(dim=1)
    js = (0.5 * kl_pm + 0.5 * kl_qm).mean()
    return 1 - js.clamp(0, 1)


def intra_divergence_loss(features: torch.Tensor, logits: torch.Tensor,
                          labels: torch.Tensor,
                          margin: float) -> Dict[str, torch.Tensor]:
    """DearKD's boundary-preserving intra-class divergence (our
    formulation; the paper has no official code).

    With ``f̂_i = f_i / ‖f_i‖`` the teacher's L2-normalised penultimate
    features and ``P = {(i, j): i ≠ j, y_i = y_j}`` the ordered same-class
    pairs of the batch:

    - ``diversity = (1/|P|) Σ_{(i,j)∈P} f̂_i · f̂_j`` (0 when ``P`` is
      empty): minimising it pushes the samples of a class apart;
    - ``boundary = (1/N) Σ_i relu(margin − (z_iy − max_{k≠y} z_ik))`` with
      ``y = y_i``: a hinge keeping every sample on its class's side of the
      teacher's decision boundary by at least ``margin`` logits.

    Args:
        features (Tensor): Teacher penultimate features, N x D.
        logits (Tensor): Teacher logits, N x K (K ≥ 2).
        labels (Tensor): Target classes, N (int64).
        margin (float): The logit margin the hinge asks for.

    Returns:
        dict: ``diversity`` and ``boundary``, scalars to weight separately.
    """
    if features.dim() != 2 or logits.dim() != 2 or \
            len(features) != len(logits) or labels.shape != (len(logits), ):
        raise ValueError(
            f'Expected features N x D, logits N x K and labels N; got '
            f'{tuple(features.shape)}, {tuple(logits.shape)} and '
            f'{tuple(labels.shape)}.')
    normed = F.normalize(features, dim=1)
    cosine = normed @ normed.t()  # N x N
    same = labels[:, None] == labels[None, :]
    same.fill_diagonal_(False)
    pairs = same.sum()
    diversity = (cosine * same).sum() / pairs.clamp(min=1)
    target = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.masked_fill(
        F.one_hot(labels, logits.shape[1]).bool(), float('-inf'))
    boundary = F.relu(margin - (target - others.max(dim=1).values)).mean()
    return dict(diversity=diversity, boundary=boundary)
