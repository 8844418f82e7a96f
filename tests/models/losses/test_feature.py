import re

import numpy as np
import pytest
import torch

import cls_kd
from cls_kd.models.distillers import DistillerConfigError
from cls_kd.models.losses import (
    AttentionTransferLoss,
    ChannelWiseDivergenceLoss,
    FeatureCosineLoss,
    FeatureL1Loss,
    FeatureMSELoss,
    HintLoss,
    feature_mse_loss,
)
from cls_kd.registry import MODELS

cls_kd.register_all_modules()


def feats(*shape, seed=0):
    return torch.from_numpy(
        np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def np64(x):
    return x.detach().double().numpy()


# Two blocks of different layouts: tokens and a map.
STUDENT = [feats(3, 5, 4, seed=1), feats(3, 4, 2, 3, seed=2)]
TEACHER = [feats(3, 5, 4, seed=3), feats(3, 4, 2, 3, seed=4)]


@pytest.mark.parametrize('cls,error', [
    (FeatureMSELoss, lambda d: d * d),
    (FeatureL1Loss, abs),
])
def test_elementwise_losses_both_reductions_over_blocks(cls, error):
    sum_per_sample = mean = 0.0
    for s, t in zip(STUDENT, TEACHER):
        s, t = np64(s), np64(t)
        total, count = 0.0, 0
        for idx in np.ndindex(s.shape):  # element by element
            total += error(s[idx] - t[idx])
            count += 1
        sum_per_sample += total / s.shape[0]
        mean += total / count
    loss = cls(loss_weight=0.5)(STUDENT, TEACHER)
    assert loss.dtype == torch.float32 and loss.dim() == 0
    np.testing.assert_allclose(loss.item(), 0.5 * sum_per_sample, rtol=1e-5)
    np.testing.assert_allclose(
        cls(reduction='mean')(STUDENT, TEACHER).item(), mean, rtol=1e-5)


def test_mse_on_vectors_and_hand_computed_value():
    s = torch.tensor([[1., 2.], [0., 0.]])
    t = torch.tensor([[0., 0.], [3., 0.]])
    # Squared errors 1 + 4 + 9 = 14: 14 / B = 7, 14 / 4 elements = 3.5.
    assert FeatureMSELoss()(s, t).item() == 7.0
    assert FeatureMSELoss(reduction='mean')(s, t).item() == 3.5
    assert FeatureL1Loss()(s, t).item() == 3.0  # (1 + 2 + 3) / 2


def test_mse_single_tensor_equals_one_block_list():
    one = FeatureMSELoss()(STUDENT[1], TEACHER[1])
    assert torch.equal(one, feature_mse_loss([STUDENT[1]], [TEACHER[1]]))


def cosine_reference(s, t, dim):
    s, t = np.moveaxis(np64(s), dim, -1), np.moveaxis(np64(t), dim, -1)
    losses = []
    for idx in np.ndindex(s.shape[:-1]):
        a, b = s[idx], t[idx]
        losses.append(1 - a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    return float(np.mean(losses))


def test_cosine_default_dim_is_channels():
    # Tokens and vectors: last dim; maps: dim 1.
    expected = (cosine_reference(STUDENT[0], TEACHER[0], -1) +
                cosine_reference(STUDENT[1], TEACHER[1], 1))
    loss = FeatureCosineLoss(loss_weight=2.0)(STUDENT, TEACHER)
    np.testing.assert_allclose(loss.item(), 2.0 * expected, rtol=1e-5)
    vec_s, vec_t = feats(4, 6, seed=5), feats(4, 6, seed=6)
    np.testing.assert_allclose(
        FeatureCosineLoss()(vec_s, vec_t).item(),
        cosine_reference(vec_s, vec_t, -1), rtol=1e-5)


def test_cosine_explicit_dim_and_hand_values():
    np.testing.assert_allclose(
        FeatureCosineLoss(dim=1)(STUDENT[0], TEACHER[0]).item(),
        cosine_reference(STUDENT[0], TEACHER[0], 1), rtol=1e-5)
    s = torch.tensor([[1., 0.], [1., 1.]])
    t = torch.tensor([[-2., 0.], [3., 3.]])  # opposite, then parallel
    assert FeatureCosineLoss()(s, t).item() == pytest.approx(1.0)  # (2+0)/2
    with pytest.raises(ValueError, match='dim=3 is out of range'):
        FeatureCosineLoss(dim=3)(s, t)


def test_hint_regresses_maps_and_tokens_with_one_linear_map():
    torch.manual_seed(0)
    hint = HintLoss(4, 6)
    params = dict(hint.named_parameters())
    assert set(params) == {'regressor.weight', 'regressor.bias'}
    w, b = np64(params['regressor.weight']), np64(params['regressor.bias'])
    s_map, t_map = feats(2, 4, 3, 3, seed=7), feats(2, 6, 3, 3, seed=8)
    s, t = np64(s_map), np64(t_map)
    total = 0.0
    for bi in range(2):
        for i in range(3):
            for j in range(3):  # 1x1 conv = W @ x + b at each position
                total += ((w @ s[bi, :, i, j] + b - t[bi, :, i, j])**2).sum()
    np.testing.assert_allclose(
        hint(s_map, t_map).item(), total / t.size, rtol=1e-5)
    tokens_s = s_map.flatten(2).transpose(1, 2)  # B, 9, 4
    tokens_t = t_map.flatten(2).transpose(1, 2)
    np.testing.assert_allclose(
        hint(tokens_s, tokens_t).item(), total / t.size, rtol=1e-5)
    summed = HintLoss(4, 6, reduction='sum_per_sample')
    summed.load_state_dict(hint.state_dict())
    np.testing.assert_allclose(
        summed(s_map, t_map).item(), total / 2, rtol=1e-5)


def test_hint_regressor_trains_and_identity_option():
    hint = HintLoss(4, 6)
    s = feats(2, 4, 3, 3).requires_grad_()
    t = feats(2, 6, 3, 3, seed=1).requires_grad_()
    hint(s, t).backward()
    assert s.grad is not None and t.grad is None
    assert hint.regressor.weight.grad.abs().sum() > 0
    # Equal widths: FitNets still regresses unless asked not to.
    assert len(list(HintLoss(4, 4).parameters())) == 2
    same = HintLoss(4, 4, identity_if_equal=True)
    assert list(same.parameters()) == []
    a, b = feats(2, 4, 3, 3), feats(2, 4, 3, 3, seed=1)
    assert torch.equal(same(a, b), feature_mse_loss(a, b, 'mean'))


def test_hint_errors():
    with pytest.raises(ValueError, match='in_channels=4 but the student'):
        HintLoss(4, 6)(torch.zeros(2, 5, 3, 3), torch.zeros(2, 6, 3, 3))
    with pytest.raises(ValueError, match='out_channels=6 but the teacher'):
        HintLoss(4, 6)(torch.zeros(2, 4, 3, 3), torch.zeros(2, 8, 3, 3))
    with pytest.raises(ValueError, match='one HintLoss per distilled block'):
        HintLoss(4, 6)([torch.zeros(2, 4)], [torch.zeros(2, 6)])
    with pytest.raises(ValueError, match='spatial sizes differ.*MapResize'):
        HintLoss(4, 6)(torch.zeros(2, 4, 3, 3), torch.zeros(2, 6, 2, 2))


def attention_reference(s, t, p):
    """β-less AT from its definition: a = Q/‖Q‖, Q_j = Σ_c |F_cj|^p."""
    s, t = np64(s), np64(t)
    B = s.shape[0]
    total = 0.0
    for b in range(B):
        q_s = (np.abs(s[b])**p).sum(axis=0).ravel()
        q_t = (np.abs(t[b])**p).sum(axis=0).ravel()
        diff = q_s / np.linalg.norm(q_s) - q_t / np.linalg.norm(q_t)
        total += (diff**2).sum()
    return total / (B * s[0, 0].size)


@pytest.mark.parametrize('p', [2.0, 3.0])
def test_attention_transfer_matches_definition(p):
    # Channel counts may differ; spatial sizes must not.
    s = [feats(2, 3, 4, 5, seed=9), feats(2, 6, 2, 2, seed=10)]
    t = [feats(2, 7, 4, 5, seed=11), feats(2, 5, 2, 2, seed=12)]
    expected = sum(attention_reference(a, b, p) for a, b in zip(s, t))
    loss = AttentionTransferLoss(p=p)(s, t)
    np.testing.assert_allclose(loss.item(), 1e3 / 2 * expected, rtol=1e-5)


def test_attention_transfer_hand_value():
    s = torch.tensor([[[[1., 0.]]]])  # all attention on position 0
    t = torch.tensor([[[[0., 2.]]]])  # all attention on position 1
    # a_s = (1, 0), a_t = (0, 1): mean squared difference 1, times β/2.
    assert AttentionTransferLoss(beta=10.0)(s, t).item() == 5.0
    assert AttentionTransferLoss()(s, 3 * s).item() == 0.0


def cwd_reference(s, t, tau):
    s, t = np64(s), np64(t)
    B, C = s.shape[:2]
    total = 0.0
    for b in range(B):
        for c in range(C):
            z_s, z_t = s[b, c].ravel() / tau, t[b, c].ravel() / tau
            p_s = np.exp(z_s) / np.exp(z_s).sum()
            p_t = np.exp(z_t) / np.exp(z_t).sum()
            total += sum(p_t[i] * np.log(p_t[i] / p_s[i])
                         for i in range(len(p_t)))
    return tau**2 * total / (B * C)


@pytest.mark.parametrize('tau', [1.0, 4.0])
def test_channel_wise_divergence_matches_loop(tau):
    s = [feats(2, 3, 4, 5, seed=13), feats(2, 2, 3, 3, seed=14)]
    t = [feats(2, 3, 4, 5, seed=15), feats(2, 2, 3, 3, seed=16)]
    expected = sum(cwd_reference(a, b, tau) for a, b in zip(s, t))
    loss = ChannelWiseDivergenceLoss(temperature=tau, loss_weight=3.0)(s, t)
    np.testing.assert_allclose(loss.item(), 3.0 * expected, rtol=1e-5)
    # A per-channel constant shift leaves each softmax unchanged.
    shifted = t[0] + torch.arange(3.)[None, :, None, None]
    assert ChannelWiseDivergenceLoss()(shifted, t[0]).item() == \
        pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize('loss,s_shape,t_shape', [
    (FeatureMSELoss(), (2, 5, 4), (2, 5, 4)),
    (FeatureL1Loss(reduction='mean'), (2, 4, 3, 3), (2, 4, 3, 3)),
    (FeatureCosineLoss(), (2, 5, 4), (2, 5, 4)),
    (AttentionTransferLoss(), (2, 4, 3, 3), (2, 8, 3, 3)),
    (ChannelWiseDivergenceLoss(), (2, 4, 3, 3), (2, 4, 3, 3)),
])
def test_student_gets_gradient_teacher_none(loss, s_shape, t_shape):
    s = feats(*s_shape).requires_grad_()
    t = feats(*t_shape, seed=1).requires_grad_()
    loss([s], [t]).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


@pytest.mark.parametrize('s_shape,t_shape,match', [
    ((2, 8, 4, 4), (2, 8, 2, 2),
     'spatial sizes differ (4x4 vs 2x2); add a layout connector'
     '.*MapResize(size=(2, 2)) or MapPool(size=(2, 2))'),
    ((2, 16, 8), (2, 8, 4, 4), 'layouts differ.*TokensToMap.*MapToTokens'),
    ((2, 16, 8), (2, 4, 8), 'token counts differ (16 vs 4).*TokenGridResize'),
    ((2, 8, 4, 4), (2, 16, 4, 4),
     'channels differ (8 vs 16).*ConvConnector(in_channels=8, '
     'out_channels=16).*HintLoss'),
    ((2, 16, 8), (2, 16, 12),
     'LinearConnector(in_channels=8, out_channels=12)'),
    ((2, 8), (3, 8), 'batch sizes differ'),
])
def test_shape_errors_name_the_connector(s_shape, t_shape, match):
    pattern = '.*'.join(re.escape(part) for part in match.split('.*'))
    with pytest.raises(ValueError, match=pattern):
        FeatureMSELoss()(torch.zeros(s_shape), torch.zeros(t_shape))


def test_map_only_losses_and_block_errors():
    for loss in (AttentionTransferLoss(), ChannelWiseDivergenceLoss()):
        with pytest.raises(ValueError, match='expects maps.*TokensToMap'):
            loss(torch.zeros(2, 16, 8), torch.zeros(2, 16, 8))
    with pytest.raises(ValueError, match='channels differ.*ConvConnector'):
        ChannelWiseDivergenceLoss()(torch.zeros(2, 4, 3, 3),
                                    torch.zeros(2, 8, 3, 3))
    with pytest.raises(ValueError, match='block pair 1: .*spatial sizes'):
        AttentionTransferLoss()(
            [torch.zeros(2, 4, 3, 3)] * 2,
            [torch.zeros(2, 4, 3, 3), torch.zeros(2, 4, 2, 2)])
    with pytest.raises(ValueError, match='2 student features vs 1 teacher'):
        FeatureMSELoss()([torch.zeros(2, 3)] * 2, [torch.zeros(2, 3)])
    with pytest.raises(ValueError, match='reduction must be one of'):
        FeatureMSELoss(reduction='sum')


@pytest.mark.parametrize('cls, kwargs, message', [
    (ChannelWiseDivergenceLoss, dict(temperature=0),
     'temperature must be a finite number > 0, got 0.'),
    (ChannelWiseDivergenceLoss, dict(loss_weight=float('nan')),
     'loss_weight must be a finite number >= 0, got nan.'),
    (AttentionTransferLoss, dict(p=0),
     'p must be a finite number > 0, got 0.'),
    (AttentionTransferLoss, dict(beta=float('inf')),
     'beta must be a finite number > 0, got inf.'),
    (FeatureMSELoss, dict(loss_weight=float('inf')),
     'loss_weight must be a finite number >= 0, got inf.'),
    (FeatureL1Loss, dict(loss_weight=-1),
     'loss_weight must be a finite number >= 0, got -1.'),
    (FeatureCosineLoss, dict(loss_weight=float('nan')),
     'loss_weight must be a finite number >= 0, got nan.'),
    (HintLoss, dict(in_channels=0, out_channels=4),
     'in_channels must be an integer >= 1, got 0.'),
    (HintLoss, dict(in_channels=4, out_channels=4.0),
     'out_channels must be an integer >= 1, got 4.0.'),
    (HintLoss, dict(in_channels=4, out_channels=4, loss_weight=float('nan')),
     'loss_weight must be a finite number >= 0, got nan.'),
])
def test_bad_numbers_name_key_value_and_range(cls, kwargs, message):
    with pytest.raises(DistillerConfigError, match=re.escape(message)):
        cls(**kwargs)


def test_build_from_registry_by_name():
    assert isinstance(MODELS.build(dict(type='FeatureMSELoss')),
                      FeatureMSELoss)
    hint = MODELS.build(dict(type='HintLoss', in_channels=2, out_channels=3))
    assert isinstance(hint, HintLoss)
    for name in ('FeatureL1Loss', 'FeatureCosineLoss',
                 'AttentionTransferLoss', 'ChannelWiseDivergenceLoss'):
        assert type(MODELS.build(dict(type=name))).__name__ == name
