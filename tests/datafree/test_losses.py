"""Data-free synthesis losses against hand-computed values and NumPy."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from cls_kd.datafree import (
    BNStatsHook,
    adaptive_loss,
    bn_feature_loss,
    intra_divergence_loss,
    l2_prior,
    tv_l2,
)

RNG = np.random.RandomState(0)


def test_tv_l2_by_hand():
    # a b / c d = 1 2 / 4 8: horizontal (1-2, 4-8), vertical (1-4, 2-8),
    # anti-diagonal c-b = 4-2, diagonal a-d = 1-8.
    x = torch.tensor([[[[1., 2.], [4., 8.]]]])
    expected = math.hypot(1, 4) + math.hypot(3, 6) + 2 + 7
    assert tv_l2(x).item() == pytest.approx(expected)


def test_tv_l2_matches_numpy_loops():
    x = RNG.randn(2, 3, 4, 5)
    sums = [0.] * 4
    for n in range(2):
        for c in range(3):
            for i in range(4):
                for j in range(5):
                    if j + 1 < 5:
                        sums[0] += (x[n, c, i, j] - x[n, c, i, j + 1])**2
                    if i + 1 < 4:
                        sums[1] += (x[n, c, i, j] - x[n, c, i + 1, j])**2
                    if i + 1 < 4 and j + 1 < 5:
                        sums[2] += (x[n, c, i + 1, j] - x[n, c, i, j + 1])**2
                        sums[3] += (x[n, c, i, j] - x[n, c, i + 1, j + 1])**2
    expected = sum(math.sqrt(s) for s in sums)
    assert tv_l2(torch.tensor(x)).item() == pytest.approx(expected)
    assert tv_l2(torch.ones(2, 3, 4, 5)).item() == 0


def test_l2_prior_is_the_norm_of_the_whole_batch():
    x = torch.tensor([[[[3.]]], [[[4.]]]])
    assert l2_prior(x).item() == pytest.approx(5.)


def _conv_bn_net():
    """conv(1->2) - BN(2) - conv(2->3) - BN(3) with known running stats."""
    net = nn.Sequential(
        nn.Conv2d(1, 2, 1, bias=False), nn.BatchNorm2d(2),
        nn.Conv2d(2, 3, 1, bias=False), nn.BatchNorm2d(3))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([1., -2.]).view(2, 1, 1, 1))
        net[1].running_mean.copy_(torch.tensor([0.5, -1.]))
        net[1].running_var.copy_(torch.tensor([2., 3.]))
        net[2].weight.copy_(torch.tensor(RNG.randn(3, 2, 1, 1)))
        net[3].running_mean.copy_(torch.tensor([0.1, 0.2, 0.3]))
        net[3].running_var.copy_(torch.tensor([1., 0.5, 4.]))
    return net.eval().requires_grad_(False)


def _stats_loss(a, running_mean, running_var):
    """NumPy: per channel over (N, H, W), biased variance."""
    channels = a.shape[1]
    mean = np.array([a[:, c].mean() for c in range(channels)])
    var = np.array([((a[:, c] - mean[c])**2).mean() for c in range(channels)])
    return np.linalg.norm(mean - running_mean) + np.linalg.norm(
        var - running_var)


def test_bn_loss_matches_numpy_and_weights_the_first_layer():
    net = _conv_bn_net()
    x = RNG.randn(4, 1, 3, 3)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with BNStatsHook(net) as hook:
        net(torch.tensor(x, dtype=torch.float32))
        layers = hook.losses
        assert hook.names == ['1', '3']
    with torch.no_grad():
        a1 = net[0](torch.tensor(x, dtype=torch.float32))
        a2 = net[2](net[1](a1))
    expected = [
        _stats_loss(a1.numpy(), [0.5, -1.], [2., 3.]),
        _stats_loss(a2.numpy(), [0.1, 0.2, 0.3], [1., 0.5, 4.])
    ]
    assert [v.item() for v in layers] == pytest.approx(expected, rel=1e-5)
    assert bn_feature_loss(layers).item() == pytest.approx(
        10 * expected[0] + expected[1], rel=1e-5)
    assert bn_feature_loss(layers, 1.).item() == pytest.approx(
        sum(expected), rel=1e-5)
    # Observed only: eval mode, running statistics unchanged, hooks gone.
    assert not net.training
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert not any(m._forward_hooks for m in net.modules())
    assert not net._forward_pre_hooks


def test_bn_loss_has_gradient_for_the_input():
    net = _conv_bn_net()
    x = torch.randn(4, 1, 3, 3, requires_grad=True)
    with BNStatsHook(net) as hook:
        net(x)
        bn_feature_loss(hook.losses).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_bn_hook_refuses_nets_without_batchnorm_and_skipped_layers():
    with pytest.raises(ValueError, match='no BatchNorm'):
        BNStatsHook(nn.Sequential(nn.Conv2d(1, 1, 1)))
    net = _conv_bn_net()
    with BNStatsHook(net) as hook:
        with pytest.raises(RuntimeError, match=r"\['1', '3'\] did not run"):
            hook.losses
        net[:2](torch.randn(2, 1, 2, 2))  # the last BN does not run
        with pytest.raises(RuntimeError, match=r"\['3'\] did not run"):
            hook.losses
        net(torch.randn(2, 1, 2, 2))
        assert len(hook.losses) == 2


def _js_numpy(t, s, temperature):
    total = 0.
    for b in range(len(t)):
        p = np.exp(t[b] / temperature) / np.exp(t[b] / temperature).sum()
        q = np.exp(s[b] / temperature) / np.exp(s[b] / temperature).sum()
        m = (p + q) / 2
        total += 0.5 * (p * np.log(p / m)).sum() + 0.5 * (q * np.log(
            q / m)).sum()
    return total / len(t)


@pytest.mark.parametrize('temperature', [1., 3.])
def test_adaptive_loss_matches_numpy(temperature):
    t, s = RNG.randn(4, 6) * 3, RNG.randn(4, 6) * 3
    loss = adaptive_loss(torch.tensor(t), torch.tensor(s), temperature)
    assert loss.item() == pytest.approx(
        1 - _js_numpy(t, s, temperature), rel=1e-6)
    same = adaptive_loss(torch.tensor(t), torch.tensor(t), temperature)
    assert same.item() == pytest.approx(1.)
    with pytest.raises(ValueError, match='differ'):
        adaptive_loss(torch.zeros(2, 3), torch.zeros(2, 4))


def test_intra_divergence_by_hand():
    # Samples 0, 1, 2 of class 0 at 0, 90 and 45 degrees; sample 3 alone.
    r = math.sqrt(0.5)
    features = torch.tensor([[2., 0.], [0., 3.], [r, r], [1., 1.]])
    logits = torch.tensor([[3., 1., 0.], [0.5, 1., 0.], [2., 0., 1.5],
                           [0., 0., 4.]])
    labels = torch.tensor([0, 0, 0, 2])
    terms = intra_divergence_loss(features, logits, labels, margin=1.)
    # Ordered pairs: (0,1), (1,0): cos 0; (0,2), (2,0), (1,2), (2,1): r.
    assert terms['diversity'].item() == pytest.approx(4 * r / 6)
    # Margins z_y - max_other: 2, -0.5, 0.5, 4 -> hinge 0, 1.5, 0.5, 0.
    assert terms['boundary'].item() == pytest.approx(2. / 4)


def test_intra_divergence_without_pairs_and_bad_shapes():
    terms = intra_divergence_loss(
        torch.randn(3, 4), torch.randn(3, 3), torch.tensor([0, 1, 2]), 0.)
    assert terms['diversity'].item() == 0
    with pytest.raises(ValueError, match='Expected features N x D'):
        intra_divergence_loss(
            torch.randn(3, 4), torch.randn(2, 3), torch.tensor([0, 1]), 0.)


def test_intra_divergence_gradient_pushes_a_class_apart():
    features = torch.tensor([[1., 0.2], [1., -0.1], [0., 1.]],
                            requires_grad=True)
    labels = torch.tensor([0, 0, 1])
    logits = torch.zeros(3, 2)
    diversity = intra_divergence_loss(features, logits, labels,
                                      0.)['diversity']
    diversity.backward()
    # Descent rotates sample 0 up and sample 1 down (apart); sample 2 has
    # no same-class partner and gets no gradient.
    step = -features.grad
    assert step[0, 1] > 0 and step[1, 1] < 0
    assert torch.equal(features.grad[2], torch.zeros(2))
    with torch.no_grad():
        moved = features + 0.1 * step
    assert intra_divergence_loss(moved, logits, labels,
                                 0.)['diversity'] < diversity


def test_boundary_gradient_raises_the_target_logit_only_below_margin():
    logits = torch.tensor([[1., 0.8], [5., 0.]], requires_grad=True)
    labels = torch.tensor([0, 0])
    intra_divergence_loss(torch.randn(2, 3), logits, labels,
                          margin=1.)['boundary'].backward()
    assert logits.grad[0, 0] < 0 and logits.grad[0, 1] > 0
    assert torch.equal(logits.grad[1], torch.zeros(2))
