import pytest
import torch

import cls_kd
from cls_kd.registry import MODELS

cls_kd.register_all_modules()


def head(**kwargs):
    return MODELS.build(dict(type='DINOLinearClsHead', num_classes=5,
                             **kwargs))


def test_concatenates_class_tokens_in_block_order():
    feats = tuple(torch.randn(2, 5, 4) for _ in range(3))
    h = head(in_channels=12)
    out = h.pre_logits(feats)
    torch.testing.assert_close(
        out, torch.cat([feats[0][:, 0], feats[1][:, 0], feats[2][:, 0]], 1))
    torch.testing.assert_close(h(feats), h.fc(out))
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                   for m in h.modules())


def test_avgpool_interleaves_cls_and_patch_mean_as_dino():
    tokens = torch.randn(2, 5, 4)
    out = head(in_channels=8, avgpool_patchtokens=True).pre_logits(
        (tokens, ))
    cls, avg = tokens[:, 0], tokens[:, 1:].mean(1)
    assert torch.equal(out[:, 0::2], cls) and torch.equal(out[:, 1::2], avg)


@pytest.mark.parametrize('kwargs, feats, match', [
    (dict(in_channels=8, avgpool_patchtokens=True),
     (torch.zeros(2, 5, 4), ) * 2, 'needs one block'),
    (dict(in_channels=4), (torch.zeros(2, 4), ), r"out_type='raw'"),
    (dict(in_channels=10), (torch.zeros(2, 5, 4), ) * 2,
     'has 8 channels .2 blocks., in_channels is 10'),
])
def test_errors(kwargs, feats, match):
    with pytest.raises(ValueError, match=match):
        head(**kwargs).pre_logits(feats)
