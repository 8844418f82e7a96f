"""ViTKD: mimic shallow blocks, generate the deepest one.

Reference: Yang et al., "ViTKD: Practical Guidelines for ViT feature
knowledge distillation", 2022. The trainable parts (the per-block
projections and the masked generator) are connectors: see
:class:`~cls_kd.models.connectors.LinearConnector` and
:class:`~cls_kd.models.connectors.ViTKDGenerator`.
"""
from typing import Sequence, Union

import torch
from torch import Tensor, nn

from cls_kd.errors import check_number
from cls_kd.registry import MODELS

__all__ = [
    'ViTKDMimicLoss', 'ViTKDGenerationLoss', 'vitkd_mimic_loss',
    'vitkd_generation_loss'
]

Tokens = Union[Tensor, Sequence[Tensor]]


def _grid(n: int) -> str:
    side = int(n**0.5)
    return f'{side}x{side}' if side * side == n else f'{n} tokens'


def check_token_pair(preds: Tensor, targets: Tensor, what: str) -> None:
    """Raise a ``ValueError`` that says what to fix unless student and
    teacher tokens are both (B, N, D) of the same shape."""
    if preds.dim() != 3 or targets.dim() != 3:
        raise ValueError(
            f'{what}: expected patch tokens (B, N, D) from both models, got '
            f'student {tuple(preds.shape)} and teacher '
            f'{tuple(targets.shape)} (tap them with selector='
            f'"patch_tokens").')
    if preds.shape[:2] != targets.shape[:2]:
        raise ValueError(
            f'{what}: token grids differ, student {tuple(preds.shape)} '
            f'({_grid(preds.shape[1])}) vs teacher {tuple(targets.shape)} '
            f'({_grid(targets.shape[1])}). ViTKD compares tokens position '
            f'by position, so both need the same patch size and input size; '
            f'to resample the teacher\'s grid instead, wrap the teacher '
            f'input in a TokenGridResize connector, e.g. '
            f'"resize(t_block0, s_block0)".')
    if preds.shape[2] != targets.shape[2]:
        raise ValueError(
            f'{what}: widths differ, student {preds.shape[2]} vs teacher '
            f'{targets.shape[2]}; project the student tokens with '
            f'LinearConnector(in_channels={preds.shape[2]}, '
            f'out_channels={targets.shape[2]}).')


def check_mask_ratio(mask: Tensor, mask_ratio: float) -> None:
    """Raise a ``ValueError`` unless the generator's mask hides as many
    tokens as ``mask_ratio`` means (a generator configured with another
    ratio than its loss).

    Reads the mask on the host, so only where that is free: on a CPU mask
    (the distiller's build-time dry run, CPU training); not on a GPU, where
    it would wait for the device every step, nor while compiling.

    Args:
        mask (Tensor): (B, N), 1 where a token was masked.
        mask_ratio (float): λ.
    """
    if mask.device.type != 'cpu' or torch.compiler.is_compiling():
        return
    n = mask.shape[1]
    masked = int(mask[0].sum())
    expected = n - int(n * (1 - mask_ratio))
    if masked != expected:
        raise ValueError(
            f'ViTKDGenerationLoss: the mask hides {masked} of {n} tokens '
            f'but mask_ratio={mask_ratio} means {expected}; give the '
            f'generator and the loss the same mask_ratio.')


def vitkd_mimic_loss(preds: Sequence[Tensor],
                     targets: Sequence[Tensor]) -> Tensor:
    """Sum over blocks of the summed squared error, divided by the batch
    size (not a mean over tokens and channels)."""
    batch = preds[0].shape[0]
    total = sum(((p.float() - t.detach().float())**2).sum()
                for p, t in zip(preds, targets))
    return total / batch


def vitkd_generation_loss(preds: Tensor, targets: Tensor, mask: Tensor,
                          mask_ratio: float) -> Tensor:
    """Squared error summed over the masked positions only, divided by the
    batch size and by the mask ratio λ."""
    error = (preds.float() - targets.detach().float())**2  # B, N, D
    masked = error * mask.to(error.dtype).unsqueeze(-1)
    return masked.sum() / preds.shape[0] / mask_ratio


@MODELS.register_module()
class ViTKDMimicLoss(nn.Module):
    """ViTKD's mimicking term for shallow blocks: α·Σ‖s − t‖²/B.

    The student tokens are expected already projected to the teacher's width
    (one :class:`LinearConnector` per block, identity for equal widths).

    Args:
        alpha (float): Weight α. Defaults to 3e-5 (the paper's, for sums over
            196 tokens of width 192 to 1024; rescale it for other sizes).
    """

    def __init__(self, alpha: float = 3e-5):
        super().__init__()
        check_number('alpha', alpha, low=0, low_open=True)
        self.alpha = alpha

    def forward(self, preds: Tokens, targets: Tokens) -> Tensor:
        """Compute the loss.

        Args:
            preds (Tensor | list[Tensor]): Projected student patch tokens,
                (B, N, D_t) per block.
            targets (Tensor | list[Tensor]): Teacher patch tokens, (B, N, D_t)
                per block, in the same order; not back-propagated.

        Returns:
            Tensor: Scalar loss, float32.
        """
        preds = [preds] if torch.is_tensor(preds) else list(preds)
        targets = [targets] if torch.is_tensor(targets) else list(targets)
        if not preds or len(preds) != len(targets):
            raise ValueError(
                f'ViTKDMimicLoss: {len(preds)} student blocks vs '
                f'{len(targets)} teacher blocks; give one of each per '
                f'mimicked block, in the same order.')
        for i, (p, t) in enumerate(zip(preds, targets)):
            check_token_pair(p, t, f'ViTKDMimicLoss, block pair {i}')
        return self.alpha * vitkd_mimic_loss(preds, targets)


@MODELS.register_module()
class ViTKDGenerationLoss(nn.Module):
    """ViTKD's generation term for the deepest block:
    β·Σ_masked‖G(s) − t‖²/B/λ.

    Args:
        beta (float): Weight β. Defaults to 3e-6 (the paper's).
        mask_ratio (float): λ, the fraction of tokens the generator masks;
            must be the generator's (checked on CPU masks, as in the
            distiller's build-time dry run: :func:`check_mask_ratio`).
            Defaults to 0.5.
    """

    def __init__(self, beta: float = 3e-6, mask_ratio: float = 0.5):
        super().__init__()
        check_number('beta', beta, low=0, low_open=True)
        check_number('mask_ratio', mask_ratio, low=0, high=1, low_open=True,
                     high_open=True)
        self.beta = beta
        self.mask_ratio = mask_ratio

    def forward(self, preds: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
        """Compute the loss.

        Args:
            preds (Tensor): Generated tokens, (B, N, D_t).
            targets (Tensor): Teacher's last-block patch tokens after its
                final norm, (B, N, D_t); not back-propagated.
            mask (Tensor): (B, N), 1 where the generator replaced the
                student token by the mask token.

        Returns:
            Tensor: Scalar loss, float32.
        """
        check_token_pair(preds, targets, 'ViTKDGenerationLoss')
        if mask.shape != preds.shape[:2]:
            raise ValueError(f'ViTKDGenerationLoss: mask must be (B, N) = '
                             f'{tuple(preds.shape[:2])}, got '
                             f'{tuple(mask.shape)}.')
        check_mask_ratio(mask, self.mask_ratio)
        return self.beta * vitkd_generation_loss(preds, targets, mask,
                                                 self.mask_ratio)
