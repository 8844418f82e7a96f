import pytest
import timm
import torch
import torch.nn as nn

import cls_kd
from cls_kd.models.taps import StopForward, Tap, TapSet
from cls_kd.registry import MODELS

cls_kd.register_all_modules()

ARCH = dict(embed_dims=16, num_layers=2, num_heads=2, feedforward_channels=32)


def classifier(backbone_type='VisionTransformer', **backbone):
    return MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=dict(
                type=backbone_type,
                arch=ARCH,
                img_size=32,
                patch_size=8,
                **backbone),
            head=dict(
                type='VisionTransformerClsHead', num_classes=4,
                in_channels=16)))


def linear_relu():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU())


def test_captures_output():
    model = linear_relu()
    x = torch.randn(5, 4)
    store = {'__enabled__': True}
    Tap('h', model, 'student', '0').install(store)
    model(x)
    expected = x @ model[0].weight.t() + model[0].bias
    torch.testing.assert_close(store['h'], expected)


def test_captures_input():
    model = linear_relu()
    x = torch.randn(5, 4)
    store = {'__enabled__': True}
    Tap('pre_relu', model, 'student', '1', capture='input').install(store)
    out = model(x)
    expected = x @ model[0].weight.t() + model[0].bias
    torch.testing.assert_close(store['pre_relu'], expected)
    assert (store['pre_relu'] < 0).any() and not (out < 0).any()


def test_disabled_store_captures_nothing():
    model = linear_relu()
    store = {'__enabled__': False}
    Tap('h', model, 'student', '0').install(store)
    model(torch.randn(2, 4))
    assert store == {'__enabled__': False}


def test_tapset_enable_collect():
    model = linear_relu()
    taps = TapSet([
        Tap('a', model, 'student', '0'),
        Tap('b', model, 'student', '1')
    ])
    taps.install()
    model(torch.randn(2, 4))
    assert taps.collect() == {}
    taps.enable()
    out = model(torch.randn(2, 4))
    captured = taps.collect()
    assert list(captured) == ['a', 'b']
    assert captured['b'] is out
    model(torch.randn(2, 4))
    assert taps.collect() == {}


def test_remove_removes_hook():
    model = linear_relu()
    tap = Tap('h', model, 'student', '0')
    tap.install({'__enabled__': True})
    tap.install({'__enabled__': True})  # idempotent: still one hook
    assert len(model[0]._forward_hooks) == 1
    tap.remove()
    assert len(model[0]._forward_hooks) == 0
    tap.remove()


def test_stop_after_raises_after_capturing():
    model = linear_relu()
    store = {'__enabled__': True}
    tap = Tap('h', model, 'teacher', '0')
    tap.stop_after = True
    tap.install(store)
    with pytest.raises(StopForward):
        model(torch.randn(2, 4))
    assert store['h'].shape == (2, 3)


def test_bad_path_lists_close_names():
    model = classifier()
    with pytest.raises(KeyError) as info:
        Tap('s0', model, 'student', 'backbone.layer.0')
    message = str(info.value)
    assert "Tap 's0' on student: no module 'backbone.layer.0'" in message
    assert "'backbone.layers.0'" in message
    assert "['data_preprocessor', 'backbone', 'head']" in message


def test_bad_selector_and_capture():
    model = linear_relu()
    with pytest.raises(KeyError, match="unknown selector 'cls'.*cls_token"):
        Tap('h', model, 'student', '0', selector='cls')
    with pytest.raises(ValueError, match='capture must be'):
        Tap('h', model, 'student', '0', capture='grad')


@pytest.mark.parametrize('backbone_type, expected',
                         [('VisionTransformer', 1),
                          ('DistilledVisionTransformer', 2)])
def test_prefix_tokens_from_mmpretrain(backbone_type, expected):
    model = classifier(backbone_type)
    tap = Tap('t', model, 'student', 'backbone.layers.0.attn')
    assert tap.num_prefix_tokens == expected


@pytest.mark.parametrize('kwargs, expected', [({}, 1), (dict(reg_tokens=4),
                                                        5)])
def test_prefix_tokens_from_timm(kwargs, expected):
    model = timm.create_model(
        'vit_tiny_patch16_224',
        pretrained=False,
        img_size=32,
        patch_size=8,
        num_classes=10,
        depth=1,
        embed_dim=16,
        num_heads=2,
        **kwargs)
    tap = Tap('t', model, 'student', 'blocks.0')
    assert tap.num_prefix_tokens == expected
    store = {'__enabled__': True}
    tap.install(store)
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    assert store['t'].shape == (1, expected + 16, 16)


def test_prefix_tokens_override_and_absent():
    model = classifier()
    tap = Tap('t', model, 'student', 'backbone.layers.0',
              num_prefix_tokens=3)
    assert tap.num_prefix_tokens == 3
    assert Tap('h', linear_relu(), 'student', '0').num_prefix_tokens is None


def test_patch_map_matches_mmpretrain_featmap():
    """A patch_map tap on the last block equals mmpretrain's own featmap
    output (same prefix count, same row-major layout)."""
    torch.manual_seed(0)
    model = classifier(out_type='featmap', final_norm=False)
    store = {'__enabled__': True}
    Tap('m', model, 'student', 'backbone.layers.1',
        selector='patch_map').install(store)
    with torch.no_grad():
        featmap = model.backbone(torch.randn(2, 3, 32, 32))[-1]
    assert featmap.shape == (2, 16, 4, 4)
    assert torch.equal(store['m'], featmap)
