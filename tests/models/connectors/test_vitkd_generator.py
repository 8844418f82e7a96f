import numpy as np
import pytest
import torch
import torch.nn as nn

from cls_kd.models.connectors import (
    TokenGridResize,
    ViTKDGenerator,
    random_masking,
)


def reference_generator(gen, x, noise, mask_ratio):
    """Loop-by-loop re-implementation: keep the floor(N(1-l)) tokens with
    the smallest noise, put the mask token everywhere else, convolve."""
    B, N, _ = x.shape
    num_keep = int(N * (1 - mask_ratio))
    aligned = gen.align(x).detach()
    D = aligned.shape[-1]
    filled = torch.empty(B, N, D)
    mask = np.zeros((B, N))
    for b in range(B):
        kept = set(np.argsort(noise[b].numpy(), kind='stable')[:num_keep])
        for n in range(N):
            if n in kept:
                filled[b, n] = aligned[b, n]
            else:
                filled[b, n] = gen.mask_token[0, 0].detach()
                mask[b, n] = 1
    side = int(N**0.5)
    grid = filled.permute(0, 2, 1).reshape(B, D, side, side)
    with torch.no_grad():
        out = gen.generation(grid)
    return out.flatten(2).transpose(1, 2), torch.from_numpy(mask).float()


def test_mask_and_restore_order_match_an_independent_computation():
    torch.manual_seed(0)
    gen = ViTKDGenerator(in_channels=6, out_channels=8, mask_ratio=0.5)
    nn.init.normal_(gen.mask_token)  # zero-init would hide order mistakes
    x = torch.randn(3, 16, 6)
    noise = torch.rand(3, 16, generator=torch.Generator().manual_seed(7))
    out = gen(x, generator=torch.Generator().manual_seed(7))
    preds, mask = reference_generator(gen, x, noise, 0.5)
    assert torch.equal(out['mask'], mask)
    assert mask.sum(1).tolist() == [8, 8, 8]
    torch.testing.assert_close(out['preds'], preds)


def test_odd_token_count_keeps_the_floor():
    gen = ViTKDGenerator(in_channels=4, out_channels=4, mask_ratio=0.5,
                         grid_size=(3, 3))
    out = gen(torch.randn(2, 9, 4))
    assert out['mask'].sum(1).tolist() == [5, 5]  # keep floor(4.5) = 4


def test_mask_token_is_zero_init_and_trained():
    gen = ViTKDGenerator(in_channels=4, out_channels=8)
    assert gen.mask_token.shape == (1, 1, 8)
    assert not gen.mask_token.any()
    out = gen(torch.randn(2, 4, 4))
    out['preds'].sum().backward()
    assert gen.mask_token.grad.abs().sum() > 0
    assert gen.align.weight.grad is not None


def test_equal_widths_have_no_projection():
    assert isinstance(ViTKDGenerator(8, 8).align, nn.Identity)
    assert isinstance(ViTKDGenerator(8, 8, identity_if_equal=False).align,
                      nn.Linear)


def test_random_masking_is_a_per_sample_permutation():
    g = torch.Generator().manual_seed(1)
    keep, restore = random_masking(4, 10, 0.3, generator=g)
    assert keep.shape == (4, 7) and restore.shape == (4, 10)
    for b in range(4):
        assert sorted(restore[b].tolist()) == list(range(10))
        assert len(set(keep[b].tolist())) == 7


def test_generator_shape_errors():
    with pytest.raises(ValueError, match=r'\(B, N, 4\)'):
        ViTKDGenerator(4, 8)(torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match='square grid'):
        ViTKDGenerator(4, 8)(torch.randn(2, 6, 4))
    with pytest.raises(ValueError, match='mask_ratio'):
        ViTKDGenerator(4, 8, mask_ratio=0.0)


def test_token_grid_resize():
    resize = TokenGridResize()
    x = torch.arange(16.).view(1, 16, 1).expand(2, 16, 3).contiguous()
    like = torch.zeros(2, 4, 5)
    out = resize(x, like)
    assert out.shape == (2, 4, 3)
    # Bilinear 4x4 -> 2x2 without corner alignment averages each 2x2 cell.
    grid = x[0, :, 0].view(4, 4)
    cells = grid.view(2, 2, 2, 2).mean(dim=(1, 3)).flatten()
    torch.testing.assert_close(out[0, :, 0], cells)
    assert resize(x, x) is x


def test_token_grid_resize_refuses_non_square_grids():
    with pytest.raises(ValueError, match=r'6 tokens do not form a square '
                       r'grid\.$'):
        TokenGridResize()(torch.zeros(1, 6, 2), torch.zeros(1, 4, 2))


def test_generator_compiles_for_a_smaller_last_batch():
    """The last batch of an epoch is smaller: compiled with a symbolic batch
    size, the mask noise must still trace (rand without generator=None)."""
    gen = ViTKDGenerator(8, 16)
    compiled = torch.compile(gen, backend='eager', dynamic=True)
    torch._dynamo.reset()
    try:
        for batch in (4, 3):
            out = compiled(torch.randn(batch, 16, 8))
            assert out['preds'].shape == (batch, 16, 16)
            assert (out['mask'].sum(1) == 8).all()
    finally:
        torch._dynamo.reset()
