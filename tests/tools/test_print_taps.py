"""tools/analysis/print_taps.py on digits configs."""
import importlib.util
import os.path as osp

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _load_tool():
    path = osp.join(ROOT, 'tools', 'analysis', 'print_taps.py')
    spec = importlib.util.spec_from_file_location('print_taps', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = _load_tool()


def _row(lines, name):
    rows = [line.split() for line in lines if line.split()[0] == name]
    assert len(rows) == 1, (name, lines)
    return rows[0]


def test_plain_model_config(capsys):
    tables = tool.main(
        [osp.join(ROOT, 'configs/digits/vit-t4-p8_1xb64_digits.py')])
    lines = tables['model']
    # 4x4 patches of 8 pixels + the class token, width 64.
    assert _row(lines, 'backbone.layers.0') == [
        'backbone.layers.0', 'TransformerEncoderLayer', '1x17x64'
    ]
    assert _row(lines, 'backbone.patch_embed') == [
        'backbone.patch_embed', 'PatchEmbed', '(1x16x64,', '(4,', '4))'
    ]
    assert _row(lines, 'head.loss_module')[-2:] == ['not', 'run']
    printed = capsys.readouterr().out
    assert '== model (ImageClassifier), input 1x3x32x32' in printed
    assert 'backbone.layers.0 ' in printed


def test_distiller_teacher_depth_and_filter(capsys):
    config = osp.join(ROOT,
                      'configs/kd/kd_resnet18-c16_vit-t4-p8_1xb64_digits.py')
    tables = tool.main([config, '--model', 'teacher', '--depth', '2',
                        '--filter', r'layer\d'])
    assert list(tables) == ['teacher']
    names = [line.split()[0] for line in tables['teacher']]
    assert names == [f'backbone.layer{i}' for i in range(1, 5)]
    # CIFAR ResNet on 32x32: 16 channels at full size, halved 3 times.
    assert _row(tables['teacher'], 'backbone.layer4')[-1] == '1x128x4x4'
    tables = tool.main([config, '--depth', '1'])
    assert list(tables) == ['student', 'teacher']
    assert _row(tables['student'], 'head')[1:] == [
        'VisionTransformerClsHead', '1x10'
    ]


def test_unknown_model_and_bad_filter():
    config = osp.join(ROOT,
                      'configs/kd/kd_resnet18-c16_vit-t4-p8_1xb64_digits.py')
    with pytest.raises(SystemExit, match=r"no model 'teachr'.*"
                       r"\['student', 'teacher'\]"):
        tool.main([config, '--model', 'teachr'])
    with pytest.raises(SystemExit, match=r"bad --filter 'layer\('"):
        tool.main([config, '--filter', 'layer('])


def test_describe_nested_outputs():
    value = (torch.zeros(2, 3), [torch.zeros(4)], {'a': None}, 7)
    assert tool.describe(value) == '(2x3, [4], {a: None}, 7)'
