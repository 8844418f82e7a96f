"""Connector widths a config may leave out.

A connector that mixes in :class:`MeasuredWidths` takes ``None`` for a
width argument (``in_channels``, ``out_channels``, ...). It is then built
without the layers that depend on it, and :meth:`MeasuredWidths.settle_widths`
builds them once the distiller's build-time dry run has measured the call:
its input tensors and the tensor a loss compares its output with (the
``targets`` next to the ``preds`` it produces). Widths written in the config
are checked against the same measurements. The distiller settles every
connector before its ``__init__`` returns, so the optimizer and checkpoint
loading see the final shapes.

A connector that changes only the layout of its first input (tokens <->
map, resizing) sets ``keeps_channels = True``: a target compared with its
output is compared, channel-wise, with the call inside it too (``'proj'`` in
``'to_tokens(proj(s_map))'``).
"""
from typing import Dict, List, Optional, Sequence

import torch

from cls_kd.errors import describe

__all__ = [
    'MeasuredWidths', 'channels_last', 'channels_of'
]


def channels_last(x, role: str) -> int:
    """The last dim of a tensor (B, ..., C) of at least 2 dims.

    Args:
        x: The measured value.
        role (str): What ``x`` is, for the error (``'its input'``).
    """
    if not torch.is_tensor(x) or x.dim() < 2:
        raise ValueError(f'cannot read channels from {role}, a '
                         f'{describe(x)}: expected (B, ..., C).')
    return x.shape[-1]


def channels_of(x, role: str) -> int:
    """Channels of a feature: dim 1 of a map (B, C, H, W), the last dim of
    tokens (B, N, C) or vectors (B, C).

    Args:
        x: The measured value.
        role (str): What ``x`` is, for the error (``'its input'``).
    """
    if not torch.is_tensor(x) or x.dim() not in (2, 3, 4):
        raise ValueError(f'cannot read channels from {role}, a '
                         f'{describe(x)}: expected a map (B, C, H, W), '
                         f'tokens (B, N, C) or vectors (B, C).')
    return x.shape[1] if x.dim() == 4 else x.shape[-1]


class MeasuredWidths:
    """Mixin for connectors whose widths the build-time dry run can fill.

    A subclass calls :meth:`_init_widths` in its ``__init__`` with its
    width arguments, builds its width-dependent layers in
    :meth:`_build_layers` and reads widths from tensors in
    :meth:`measure_widths`. Its ``forward`` calls :meth:`_check_settled`
    first.
    """

    def _init_widths(self, **widths) -> None:
        """Keep the widths (``None``: left out) and build the layers now if
        none is left out, as a connector without this mixin would."""
        self._widths = dict(widths)
        if not self.pending_widths:
            self._build_layers(**self._widths)

    @property
    def in_channels(self) -> Optional[int]:
        """The input width (None until measured)."""
        return self._widths['in_channels']

    @property
    def out_channels(self) -> Optional[int]:
        """The output width (None until measured)."""
        return self._widths['out_channels']

    @property
    def widths(self) -> Dict[str, Optional[object]]:
        """Width arguments, ``None`` for those not settled yet."""
        return dict(self._widths)

    @property
    def pending_widths(self) -> List[str]:
        """Width arguments left out and not measured yet."""
        return [k for k, v in self._widths.items() if v is None]

    def _build_layers(self, **widths) -> None:
        """Build the layers that depend on the widths."""
        raise NotImplementedError

    def measure_widths(self, inputs: Sequence,
                       target: Optional[torch.Tensor]) -> Dict[str, object]:
        """The widths a call's tensors say.

        Args:
            inputs (Sequence): The call's arguments.
            target (Tensor, optional): What a loss compares the output with,
                None when no loss does.

        Returns:
            dict: ``width argument -> value`` for each width these tensors
            tell (an argument they do not tell is absent).
        """
        raise NotImplementedError

    def settle_widths(self, measured: Dict[str, object]) -> List[str]:
        """Check the written widths against ``measured`` and build the
        layers of those left out.

        Args:
            measured (dict): What :meth:`measure_widths` returned.

        Returns:
            list[str]: The width arguments filled now (empty if none).

        Raises:
            ValueError: A written width differs from the measured one, or a
                left-out width is not measured.
        """
        wrong = [(k, self._widths[k], v) for k, v in measured.items()
                 if self._widths.get(k) is not None and self._widths[k] != v]
        if wrong:
            raise ValueError(
                '; '.join(f'{k}={w!r} is written, but the dry run measured '
                          f'{v!r}' for k, w, v in wrong) +
                f'. Write the measured value, or leave '
                f'{" and ".join(k for k, _, _ in wrong)} out to take it.')
        pending = self.pending_widths
        missing = [k for k in pending if measured.get(k) is None]
        if missing:
            raise ValueError(
                f'{" and ".join(missing)} left out, and this call does not '
                f'tell {"them" if len(missing) > 1 else "it"}: write '
                f'{" and ".join(missing)} in the config.')
        if not pending:
            return []
        self._widths.update({k: measured[k] for k in pending})
        self._build_layers(**self._widths)
        # New layers follow the connector's mode (eval in the dry run).
        self.train(self.training)
        return pending

    def _check_settled(self) -> None:
        pending = self.pending_widths
        if pending:
            raise RuntimeError(
                f'{type(self).__name__}: {pending} were left out and never '
                f'measured. A distiller measures them in its build-time dry '
                f'run; standalone, give them or call settle_widths().')
