"""DeiT III with the block that its published weights were trained as.

mmpretrain 1.2.0's ``DeiT3TransformerEncoderLayer.forward`` normalises the
FFN input with ``ln1``, the attention's norm, although it builds ``ln2`` and
its converted checkpoints load DeiT III's second norm into ``ln2``. The
published weights then run as a different network from the one they were
trained as. :class:`FixedDeiT3` is mmpretrain's ``DeiT3`` whose blocks apply
``ln1`` before attention and ``ln2`` before the FFN, as DeiT III does.
"""
from mmpretrain.models.backbones.deit3 import (
    DeiT3,
    DeiT3TransformerEncoderLayer,
)

from cls_kd.registry import MODELS

__all__ = ['FixedDeiT3', 'FixedDeiT3TransformerEncoderLayer']


class FixedDeiT3TransformerEncoderLayer(DeiT3TransformerEncoderLayer):
    """``DeiT3TransformerEncoderLayer`` with ``ln2`` before the FFN."""

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        x = self.ffn(self.ln2(x), identity=x)
        return x


@MODELS.register_module()
class FixedDeiT3(DeiT3):
    """mmpretrain's ``DeiT3`` (same arguments, same state dict keys, same
    checkpoints) running the correct DeiT III block.

    Use it for DeiT III teachers: ``backbone=dict(type='FixedDeiT3', ...)``,
    or ``override=dict(backbone=dict(type='FixedDeiT3'))`` in a teacher spec
    that points at an mmpretrain DeiT III config.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for layer in self.layers:
            # mmpretrain builds its layer class by name inside __init__;
            # switching the class keeps every built submodule and only
            # changes forward (the subclass adds no state).
            if type(layer) is DeiT3TransformerEncoderLayer:
                layer.__class__ = FixedDeiT3TransformerEncoderLayer
