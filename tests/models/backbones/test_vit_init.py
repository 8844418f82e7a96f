"""init_style='timm': timm's (DeiT's, DINO's) ViT initialisation on
mmpretrain's ViTs, MHCA's local initialisation kept."""
import pytest
import torch
import torch.nn as nn

from cls_kd.models.backbones import (
    MHCADistilledVisionTransformer,
    TimmInitDistilledVisionTransformer,
)

ARCH = dict(embed_dims=64, num_layers=2, num_heads=4, feedforward_channels=256)


def _built(cls, **kwargs):
    torch.manual_seed(0)
    model = cls(arch=ARCH, img_size=32, patch_size=8, **kwargs)
    model.init_weights()
    return model


def test_timm_rule_on_every_part():
    model = _built(TimmInitDistilledVisionTransformer)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    weights = torch.cat([m.weight.flatten() for m in linears])
    # mmpretrain's own rule: xavier MLPs (std ~0.079 at 64 -> 256) and
    # PyTorch-default projections; timm's: one trunc-normal 0.02.
    assert abs(float(weights.std()) - 0.02) < 0.001
    assert all(not m.bias.any() for m in linears)
    for name in ('cls_token', 'dist_token', 'pos_embed'):
        token = getattr(model, name)
        assert token.abs().max() > 0, name  # mmpretrain leaves tokens at 0
        assert float(token.std()) == pytest.approx(0.02, rel=0.3), name
    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    assert all(bool((m.weight == 1).all() and not m.bias.any())
               for m in norms)
    # The patch embedding keeps PyTorch's default (kaiming-uniform, a=√5):
    # std = 1 / sqrt(3 fan_in).
    conv = model.patch_embed.projection.weight
    assert float(conv.std()) == pytest.approx(
        (1 / (3 * conv[0].numel()))**0.5, rel=0.1)


def test_mmpretrain_style_is_the_default_of_the_mixin():
    model = _built(MHCADistilledVisionTransformer, mhca_layers=1)
    assert not model.cls_token.any()  # mmpretrain's zero class token
    ffn = model.layers[1].ffn.layers[0][0].weight
    assert float(ffn.std()) > 0.05  # xavier at 64 -> 256: ~0.079


def test_mhca_local_init_survives():
    reference = _built(MHCADistilledVisionTransformer, mhca_layers=1)
    model = _built(MHCADistilledVisionTransformer, mhca_layers=1,
                   init_style='timm')
    attn, ref = model.layers[0].attn, reference.layers[0].attn
    # The positional projection is a Linear layer that the timm rule would
    # overwrite; it keeps its local (convolution-like) initialisation.
    assert torch.equal(attn.pos_proj.weight, ref.pos_proj.weight)
    assert torch.equal(attn.gating, ref.gating)
    assert abs(float(attn.qkv.weight.std()) - 0.02) < 0.002


def test_pretrained_weights_are_not_reinitialised(tmp_path):
    source = _built(TimmInitDistilledVisionTransformer)
    path = tmp_path / 'vit.pth'
    torch.save(source.state_dict(), path)
    torch.manual_seed(1)
    model = TimmInitDistilledVisionTransformer(
        arch=ARCH, img_size=32, patch_size=8,
        init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_unknown_style():
    with pytest.raises(ValueError, match="init_style='jax'.*'timm'"):
        TimmInitDistilledVisionTransformer(
            arch=ARCH, img_size=32, patch_size=8, init_style='jax')
