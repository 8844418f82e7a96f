"""What a training step fed its model, for the non-finite guard's message.

The guard sees only the summed loss. When it stops a run, a user needs the
terms of the loss dict (which one was ``nan`` or ``inf``) and the images of
the batch. mmengine's ``train_step`` (a distiller's or a plain classifier's)
calls ``model(inputs, data_samples, mode='loss')`` inside the optimizer
wrapper's ``optim_context``; a forward hook held for that block keeps
references to what went in and what came out, until the optimizer step.
Nothing is copied or read from the device unless a message is written.
"""
import math
from contextlib import contextmanager
from typing import List, Optional

import torch
import torch.nn as nn

__all__ = ['StepRecord']


def _value(term) -> Optional[float]:
    """A loss-dict entry as ``parse_losses`` sums it (the mean of a tensor,
    the sum of the means of a list of tensors); None if it is neither."""
    if isinstance(term, torch.Tensor):
        return term.detach().float().mean().item()
    if (isinstance(term, (list, tuple)) and term
            and all(isinstance(t, torch.Tensor) for t in term)):
        return sum(t.detach().float().mean().item() for t in term)
    return None


def _img_path(sample) -> Optional[str]:
    """``img_path`` of a ``DataSample`` (or dict) if the dataset gave one."""
    meta = getattr(sample, 'metainfo', sample)
    return meta.get('img_path') if isinstance(meta, dict) else None


class StepRecord:
    """The inputs, data samples and loss dict of the last training forward.

    Args:
        max_paths (int): How many image paths :meth:`describe` lists.
            Defaults to 4.
    """

    def __init__(self, max_paths: int = 4):
        self.max_paths = max_paths
        self.clear()

    def clear(self) -> None:
        """Drop the references (the step is over)."""
        self.inputs = None
        self.data_samples = None
        self.losses: Optional[dict] = None

    @contextmanager
    def watch(self, model: nn.Module):
        """Record ``model``'s forward calls that return a dict (the loss
        dict of ``mode='loss'``) while the block runs."""
        self.clear()  # the previous micro-batch's tensors can go now
        handle = model.register_forward_hook(self._record, with_kwargs=True)
        try:
            yield
        finally:
            handle.remove()

    def _record(self, module, args, kwargs, output) -> None:
        if not isinstance(output, dict):
            return
        self.losses = output
        self.inputs = kwargs.get('inputs', args[0] if args else None)
        self.data_samples = kwargs.get('data_samples',
                                       args[1] if len(args) > 1 else None)

    def describe(self) -> str:
        """What the recorded forward saw, in a few lines (empty if nothing
        was recorded): the loss terms with their values, the samples whose
        input holds ``nan``/``inf`` and the first image paths."""
        if self.losses is None:
            return ''
        terms, bad = [], []
        for name, term in self.losses.items():
            value = _value(term)
            if value is None:
                continue
            terms.append(f'{name}={value:.4g}')
            if not math.isfinite(value):
                bad.append(name)
        verdict = (f'not finite: {", ".join(bad)}' if bad else
                   'all finite here: the non-finite value came from another '
                   'rank, an earlier micro-batch or the gradients')
        lines = [f'  loss terms: {", ".join(terms)} ({verdict})']
        samples = list(self.data_samples or [])
        paths = [_img_path(s) for s in samples]
        broken = self._nonfinite_inputs()
        if broken:
            shown = [f'{i} ({paths[i]})' if i < len(paths) and paths[i] else
                     str(i) for i in broken[:self.max_paths]]
            lines.append(f'  samples whose input holds nan/inf after '
                         f'preprocessing ({len(broken)}): {", ".join(shown)}')
        known = [p for p in paths if p]
        if known:
            lines.append(f'  images of the batch (first '
                         f'{min(len(known), self.max_paths)} of '
                         f'{len(samples)}): '
                         f'{", ".join(known[:self.max_paths])}')
        return '\n'.join(lines)

    def _nonfinite_inputs(self) -> List[int]:
        """Indices of the batch's samples whose input is not all finite."""
        inputs = self.inputs
        if not (isinstance(inputs, torch.Tensor)
                and inputs.is_floating_point() and inputs.dim() > 1):
            return []
        bad = ~torch.isfinite(inputs.detach().flatten(1)).all(1)
        return bad.nonzero().flatten().tolist()
