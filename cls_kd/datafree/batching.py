"""Per-batch pieces of a synthesis run: its labels, its seed, the learning
rate of an iteration and what a finished batch reports."""
import math
from dataclasses import dataclass
from typing import Dict

import numpy as np
import torch

from .settings import SynthesisSettingError

__all__ = ['balanced_labels', 'phase_lr', 'batch_generator', 'BatchResult']


def balanced_labels(batch_index: int, batch_size: int, num_classes: int,
                    class_repeats: int = 1) -> torch.Tensor:
    """Targets of batch ``batch_index``: image ``n`` of the run gets class
    ``(n // class_repeats) mod num_classes``, so the classes take turns and
    each gets the same number of images, whatever the batch size;
    ``class_repeats > 1`` puts runs of same-class images in a batch (what
    the intra-class divergence compares).

    Raises:
        SynthesisSettingError: ``batch_size``, ``num_classes`` or
            ``class_repeats`` below 1, or a negative ``batch_index``.
    """
    for name, value, low in (('batch_index', batch_index, 0),
                             ('batch_size', batch_size, 1),
                             ('num_classes', num_classes, 1),
                             ('class_repeats', class_repeats, 1)):
        if value < low:
            raise SynthesisSettingError(
                f'{name} must be an integer >= {low}; got {value!r}.')
    start = batch_index * batch_size
    images = torch.arange(start, start + batch_size)
    return images // class_repeats % num_classes


def phase_lr(it: int, iters: int, lr: float, warmup_iters: int = 0) -> float:
    """The learning rate of iteration ``it`` (from 0) of a phase of
    ``iters``: a linear warm-up to ``lr`` over the first ``warmup_iters``
    iterations (``lr * (it + 1) / warmup_iters``), then a cosine from ``lr``
    to 0 over the rest, as DeepInversion's ``lr_cosine_policy``; without a
    warm-up, a cosine over the whole phase."""
    if it < warmup_iters:
        return lr * (it + 1) / warmup_iters
    span = iters - warmup_iters
    return 0.5 * (1 + math.cos(math.pi * (it - warmup_iters) / span)) * lr


def batch_generator(seed: int, batch_index: int) -> torch.Generator:
    """A CPU generator that depends only on ``(seed, batch_index)``: a batch
    comes out the same in a resumed run, on any rank."""
    state = np.random.SeedSequence([seed, batch_index]).generate_state(2)
    generator = torch.Generator()
    generator.manual_seed(int(state[0]) << 32 | int(state[1]))
    return generator


@dataclass
class BatchResult:
    """One synthesised batch.

    Attributes:
        images (np.ndarray): N x H x W x C uint8, RGB (C = 3) or gray
            (C = 1).
        losses (dict): The loss terms of the last iteration, unweighted,
            and ``total`` (weighted).
        accuracy (float): Teacher top-1 on the targets, on the uint8 images.
        target_probs (np.ndarray): N, the teacher's softmax probability of
            each image's target class, on the uint8 images.
        predictions (np.ndarray): N, the teacher's top-1 class of each
            image, on the uint8 images.
    """
    images: np.ndarray
    losses: Dict[str, float]
    accuracy: float
    target_probs: np.ndarray
    predictions: np.ndarray
