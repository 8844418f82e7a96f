import pytest
import timm
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

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


def chain(num_layers):
    """Linear layers 4 -> 4, each recording its calls in ``model.calls``."""
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Linear(4, 4) for _ in range(num_layers)])
    model.calls = []
    for i, layer in enumerate(model):
        layer.register_forward_hook(
            lambda m, a, o, i=i: model.calls.append((i, o)))
    return model


def installed(*taps):
    tap_set = TapSet(list(taps))
    tap_set.install()
    tap_set.enable()
    return tap_set


def test_captures_output():
    model = linear_relu()
    x = torch.randn(5, 4)
    taps = installed(Tap('h', model, 'student', '0'))
    model(x)
    expected = x @ model[0].weight.t() + model[0].bias
    torch.testing.assert_close(taps.collect()['h'], expected)


def test_captures_input():
    model = linear_relu()
    x = torch.randn(5, 4)
    taps = installed(Tap('pre_relu', model, 'student', '1', capture='input'))
    out = model(x)
    captured = taps.collect()['pre_relu']
    expected = x @ model[0].weight.t() + model[0].bias
    torch.testing.assert_close(captured, expected)
    assert (captured < 0).any() and not (out < 0).any()


def test_tapset_enable_collect():
    model = linear_relu()
    taps = TapSet([
        Tap('a', model, 'student', '0'),
        Tap('b', model, 'student', '1')
    ])
    taps.install()
    model(torch.randn(2, 4))
    assert taps.store == {} and taps.collect() == {}
    taps.enable()
    out = model(torch.randn(2, 4))
    captured = taps.collect()
    assert list(captured) == ['a', 'b']
    assert captured['b'] is out
    model(torch.randn(2, 4))
    assert taps.store == {} and taps.collect() == {}


def test_install_is_idempotent_and_remove_removes_hooks():
    model = linear_relu()
    taps = TapSet([Tap('h', model, 'student', '0')])
    taps.install()
    taps.install()
    assert len(model[0]._forward_hooks) == 1
    taps.remove()
    assert len(model[0]._forward_hooks) == 0
    taps.remove()


def test_list_tap_gives_outputs_in_list_order():
    model = chain(3)
    taps = installed(Tap('l', model, 'student', ['2', '0']))
    model(torch.randn(2, 4))
    outputs = dict(model.calls)
    values = taps.collect()['l']
    assert isinstance(values, list) and len(values) == 2
    assert values[0] is outputs[2] and values[1] is outputs[0]


def test_single_path_list_is_still_a_list():
    model = chain(2)
    taps = installed(Tap('l', model, 'student', ['1']))
    model(torch.randn(2, 4))
    assert taps.collect()['l'] == [model.calls[1][1]]


def test_batchnorm_pattern_on_resnet():
    torch.manual_seed(0)
    model = MODELS.build(
        dict(type='ResNet', depth=18, stem_channels=8, base_channels=8))
    model.eval()
    expected_paths = [
        n for n, m in model.named_modules() if isinstance(m, _BatchNorm)
    ]
    outputs = {}
    for name in expected_paths:
        model.get_submodule(name).register_forward_hook(
            lambda m, a, o, name=name: outputs.setdefault(name, o))
    tap = Tap('bn', model, 'teacher', dict(pattern=r'.*', type='_BatchNorm'))
    # A stem BN, two per basic block and one per downsample: 1 + 16 + 3.
    assert len(tap.paths) == 20 and tap.paths == expected_paths
    assert tap.paths[:3] == ['bn1', 'layer1.0.bn1', 'layer1.0.bn2']
    by_class = Tap('bn', model, 'teacher',
                   dict(pattern=r'layer1\..*', type='BatchNorm2d'))
    assert by_class.paths == expected_paths[1:5]
    taps = installed(tap)
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    values = taps.collect()['bn']
    assert len(values) == 20
    for name, value in zip(expected_paths, values):
        assert value is outputs[name]


def test_pattern_is_fully_matched():
    tap = Tap('blocks', classifier(), 'student',
              dict(pattern=r'backbone\.layers\.[0-3]'))
    assert tap.paths == ['backbone.layers.0', 'backbone.layers.1']


def test_pattern_errors():
    model = classifier()
    with pytest.raises(KeyError) as info:
        Tap('b', model, 'student', dict(pattern=r'backbone\.layer\.[0-3]'))
    assert ("Tap 'b' on student: no module name fully matches" in
            str(info.value))
    assert "'backbone.layers.0'" in str(info.value)
    with pytest.raises(KeyError, match=r"none is a BatchNorm.*'LayerNorm'"):
        Tap('b', model, 'student',
            dict(pattern=r'backbone\..*', type='BatchNorm'))
    with pytest.raises(ValueError, match='bad pattern'):
        Tap('b', model, 'student', dict(pattern='backbone.(layers'))
    with pytest.raises(ValueError, match=r"optionally type.*'regex'"):
        Tap('b', model, 'student', dict(regex='.*'))
    with pytest.raises(ValueError, match='non-empty list'):
        Tap('b', model, 'student', [])


def test_multi_tap_collected_only_when_complete():
    model = nn.ModuleDict(dict(used=chain(2), unused=nn.Linear(4, 4)))
    taps = TapSet([
        Tap('l', model, 'student', ['used.0', 'unused', 'used.1']),
        Tap('one', model, 'student', 'used.1')
    ])
    taps.install()
    taps.enable(record=True)
    model['used'](torch.randn(2, 4))
    assert sorted(taps.store['l']) == [0, 2]
    assert list(taps.collect()) == ['one']
    assert taps.unfired() == ['l:unused']
    assert taps.fired == [('l', 0), ('l', 2), ('one', 0)]


def test_unfired_reports_every_module_of_the_last_recorded_run():
    model = chain(3)
    taps = TapSet([Tap('a', model, 'teacher', ['0', '2'])])
    taps.install()
    taps.enable(record=True)
    model[0](torch.randn(2, 4))
    taps.collect()
    assert taps.unfired() == ['a:2']
    taps.enable()  # not recorded: the report stays that of the last record
    model(torch.randn(2, 4))
    taps.collect()
    assert taps.unfired() == ['a:2']
    taps.enable(record=True)
    model(torch.randn(2, 4))
    taps.collect()
    assert taps.unfired() == []


def test_stop_after_last_module_of_a_multi_module_tap():
    model = chain(5)
    taps = TapSet([
        Tap('a', model, 'teacher', ['1', '3']),
        Tap('b', model, 'teacher', '2')
    ])
    taps.install()
    taps.enable(record=True)
    model(torch.randn(2, 4))
    taps.collect()
    assert taps.fired == [('a', 0), ('b', 0), ('a', 1)]
    taps.stop_after_last_fired()
    model.calls.clear()
    taps.enable()
    with pytest.raises(StopForward):
        model(torch.randn(2, 4))
    # Layer 3 (the last of tap a) ran and was captured; layer 4 did not run.
    assert [i for i, _ in model.calls] == [0, 1, 2, 3]
    captured = taps.collect()
    assert captured['a'][1] is model.calls[3][1]
    assert captured['b'] is model.calls[2][1]
    # Disabled: the forward is never cut short, e.g. in evaluation.
    model.calls.clear()
    model(torch.randn(2, 4))
    assert len(model.calls) == 5


def test_stop_at_the_last_call_of_a_reused_module():

    class TwiceThenHead(nn.Module):

        def __init__(self):
            super().__init__()
            self.block = nn.Linear(4, 4)
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.block(self.block(x)))

    model = TwiceThenHead()
    taps = TapSet([Tap('t', model, 'teacher', 'block')])
    taps.install()
    taps.enable(record=True)
    x = torch.randn(2, 4)
    model(x)
    taps.collect()
    assert taps.fired == [('t', 0), ('t', 0)]
    taps.stop_after_last_fired()
    taps.enable()
    model.head.register_forward_pre_hook(
        lambda m, a: pytest.fail('head ran after the stop'))
    with pytest.raises(StopForward):
        model(x)
    torch.testing.assert_close(taps.collect()['t'],
                               model.block(model.block(x)))


def test_disarm_and_record_run_the_whole_forward():
    model = chain(3)
    taps = TapSet([Tap('a', model, 'teacher', '0')])
    taps.install()
    taps.enable(record=True)
    model(torch.randn(2, 4))
    taps.collect()
    taps.stop_after_last_fired()
    taps.disarm()
    model.calls.clear()
    taps.enable()
    model(torch.randn(2, 4))
    assert len(model.calls) == 3
    taps.stop_after_last_fired()
    model.calls.clear()
    taps.enable(record=True)  # a recorded run is never cut short
    model(torch.randn(2, 4))
    assert len(model.calls) == 3 and taps.collect()['a'] is not None


def test_stop_without_fired_hooks_is_a_no_op():
    model = chain(2)
    taps = TapSet([])
    taps.install()
    taps.enable(record=True)
    model(torch.randn(2, 4))
    taps.collect()
    taps.stop_after_last_fired()
    taps.enable()
    model(torch.randn(2, 4))
    assert taps.unfired() == [] and taps.collect() == {}


def test_bad_path_lists_close_names():
    model = classifier()
    with pytest.raises(KeyError) as info:
        Tap('s0', model, 'student', 'backbone.layer.0')
    message = str(info.value)
    assert "Tap 's0' on student: no module 'backbone.layer.0'" in message
    assert "'backbone.layers.0'" in message
    assert "['data_preprocessor', 'backbone', 'head']" in message
    with pytest.raises(KeyError, match="no module 'backbone.layer.1'"):
        Tap('s0', model, 'student', ['backbone.layers.0', 'backbone.layer.1'])


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
    tap = Tap('t', model, 'student',
              ['backbone.layers.0.attn', 'head.layers.head'])
    assert tap.num_prefix_tokens == [expected, None]


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
    taps = installed(Tap('t', model, 'student', 'blocks.0',
                         selector='patch_tokens'))
    assert taps.taps[0].num_prefix_tokens == [expected]
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    assert taps.collect()['t'].shape == (1, 16, 16)


def test_prefix_tokens_override_and_absent():
    model = classifier()
    tap = Tap('t', model, 'student', 'backbone.layers.0',
              num_prefix_tokens=3)
    assert tap.num_prefix_tokens == [3]
    assert Tap('h', linear_relu(), 'student',
               '0').num_prefix_tokens == [None]


def test_patch_map_matches_mmpretrain_featmap():
    """A patch_map tap on the last block equals mmpretrain's own featmap
    output (same prefix count, same row-major layout)."""
    torch.manual_seed(0)
    model = classifier(out_type='featmap', final_norm=False)
    taps = installed(Tap('m', model, 'student', 'backbone.layers.1',
                         selector='patch_map'))
    with torch.no_grad():
        featmap = model.backbone(torch.randn(2, 3, 32, 32))[-1]
    assert featmap.shape == (2, 16, 4, 4)
    assert torch.equal(taps.collect()['m'], featmap)
