import pytest
import torch
import torch.nn as nn
from mmpretrain.models.backbones import VisionTransformer

import cls_kd
from cls_kd.models.backbones import DINOVisionTransformer

cls_kd.register_all_modules()

ARCH = dict(embed_dims=32, num_layers=3, num_heads=2,
            feedforward_channels=64)


def small(**kwargs):
    torch.manual_seed(0)
    model = DINOVisionTransformer(arch=ARCH, img_size=32, patch_size=8,
                                  **kwargs)
    model.init_weights()
    return model


def test_init_follows_dino_rules():
    model = small()
    for m in model.modules():
        if isinstance(m, nn.Linear):
            assert torch.count_nonzero(m.bias) == 0
            assert m.weight.abs().max() < 0.1  # std 0.02, not Xavier/Kaiming
        elif isinstance(m, nn.LayerNorm):
            assert (m.weight == 1).all() and (m.bias == 0).all()
    assert model.cls_token.abs().min() > 0  # not mmpretrain's zeros
    assert model.pos_embed.abs().min() > 0
    # The patch convolution: PyTorch's default (bias drawn, not zero).
    conv = model.patch_embed.projection
    assert conv.bias.abs().max() > 0
    assert conv.weight.abs().max() <= (3 * 8 * 8)**-0.5


def test_pretrained_weights_are_not_reinitialised(tmp_path):
    source = small()
    path = str(tmp_path / 'vit.pth')
    torch.save({'state_dict': source.state_dict()}, path)
    torch.manual_seed(1)
    loaded = DINOVisionTransformer(
        arch=ARCH, img_size=32, patch_size=8,
        init_cfg=dict(type='Pretrained', checkpoint=path))
    loaded.init_weights()
    for (name, a), b in zip(source.state_dict().items(),
                            loaded.state_dict().values()):
        assert torch.equal(a, b), name


def test_every_output_goes_through_the_final_norm():
    model = small(out_indices=(1, 2), out_type='raw')
    model.eval()  # mmpretrain's ViT.train() does not return the module
    blocks = {}
    for i in (1, 2):
        model.layers[i].register_forward_hook(
            lambda m, inp, out, i=i: blocks.setdefault(i, out))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        outs = model(x)
    for out, i in zip(outs, (1, 2)):
        torch.testing.assert_close(out, model.ln1(blocks[i]))
    # The last output is mmpretrain's, with the same weights.
    plain = VisionTransformer(arch=ARCH, img_size=32, patch_size=8,
                              out_type='raw')
    plain.eval()
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(outs[-1], plain(x)[-1])


@pytest.mark.parametrize('kwargs', [dict(final_norm=False),
                                    dict(with_cls_token=False,
                                         out_type='featmap')])
def test_needs_final_norm_and_cls_token(kwargs):
    with pytest.raises(ValueError, match='final_norm=True and '
                       'with_cls_token=True'):
        DINOVisionTransformer(arch=ARCH, img_size=32, patch_size=8, **kwargs)
