import torch
from mmpretrain.models.backbones import DeiT3

import cls_kd
from cls_kd.models.backbones import (
    FixedDeiT3,
    FixedDeiT3TransformerEncoderLayer,
)
from cls_kd.registry import MODELS

cls_kd.register_all_modules()

ARCH = dict(embed_dims=32, num_layers=2, num_heads=2,
            feedforward_channels=64)


def build(cls):
    torch.manual_seed(0)
    model = cls(arch=ARCH, img_size=32, patch_size=8)
    model.eval()
    with torch.no_grad():  # layer scale starts at 1e-5: make blocks count
        for name, param in model.named_parameters():
            if name.endswith('gamma1.weight') or name.endswith(
                    'gamma2.weight'):
                param.fill_(1.0)
    return model


def test_ln2_weights_change_the_output_of_the_fixed_block():
    fixed = build(FixedDeiT3)
    x = torch.randn(2, 3, 32, 32)
    before = fixed(x)[0]
    with torch.no_grad():
        for layer in fixed.layers:
            layer.ln2.weight.mul_(3.0)
            layer.ln2.bias.add_(0.5)
    after = fixed(x)[0]
    assert not torch.allclose(before, after, atol=1e-4)


def test_mmpretrain_block_ignores_ln2_and_the_fixed_one_matches_deit3():
    """Documents the upstream bug this backbone works around, and checks
    the fixed block against DeiT III's block written out by hand."""
    upstream = build(DeiT3)
    x = torch.randn(2, 3, 32, 32)
    before = upstream(x)[0]
    with torch.no_grad():
        for layer in upstream.layers:
            layer.ln2.weight.mul_(3.0)
    assert torch.allclose(before, upstream(x)[0])

    fixed = build(FixedDeiT3)
    fixed.load_state_dict(upstream.state_dict())  # same keys
    layer = fixed.layers[0]
    tokens = torch.randn(2, 17, 32)
    attn = tokens + layer.attn(layer.ln1(tokens))
    ffn = layer.ffn.layers(layer.ln2(attn))
    expected = attn + layer.ffn.gamma2(ffn)
    torch.testing.assert_close(layer(tokens), expected)


def test_registered_and_same_state_dict_as_mmpretrain():
    model = MODELS.build(
        dict(type='FixedDeiT3', arch=ARCH, img_size=32, patch_size=8))
    assert isinstance(model, FixedDeiT3)
    assert all(
        type(layer) is FixedDeiT3TransformerEncoderLayer
        for layer in model.layers)
    assert model.state_dict().keys() == build(DeiT3).state_dict().keys()
