"""Shape checks and tensor helpers shared by the logit losses."""
from __future__ import annotations

import torch
from torch import Tensor


def check_logits_shapes(logits_s: Tensor,
                        logits_t: Tensor,
                        labels: Tensor | None = None) -> None:
    """Check that student and teacher logits (and labels) fit together.

    Args:
        logits_s (Tensor): Student logits, expected (B, K).
        logits_t (Tensor): Teacher logits, expected (B, K).
        labels (Tensor, optional): Hard class indices, expected (B, ) of an
            integer dtype. Defaults to None (not checked).
    """
    if logits_s.dim() != 2 or logits_s.shape != logits_t.shape:
        raise ValueError(
            'logits_s and logits_t must both have shape (B, K), got '
            f'{tuple(logits_s.shape)} and {tuple(logits_t.shape)}')
    if labels is None:
        return
    if labels.shape != logits_s.shape[:1]:
        raise ValueError(
            f'labels must have shape (B, ) = ({logits_s.shape[0]}, ) to '
            f'match logits {tuple(logits_s.shape)}, got {tuple(labels.shape)}')
    if labels.is_floating_point() or labels.is_complex():
        raise ValueError(
            f'labels must be integer class indices, got dtype {labels.dtype}; '
            'take the argmax of soft labels first')


def drop_target(logits: Tensor, labels: Tensor) -> Tensor:
    """Remove each sample's target column.

    Args:
        logits (Tensor): (B, K).
        labels (Tensor): (B, ) target class indices.

    Returns:
        Tensor: (B, K - 1), the non-target logits in their original order.
    """
    # Column j of the result is column j + (j >= label): a gather of a fixed
    # size, where boolean-mask indexing would wait for the device to count
    # the kept entries.
    cols = torch.arange(logits.shape[1] - 1, device=logits.device)  # K - 1
    return logits.gather(1, cols + (cols >= labels[:, None]))  # B, K - 1
