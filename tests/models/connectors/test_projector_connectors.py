import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import cls_kd
from cls_kd.models.connectors import ConvConnector, LinearConnector

cls_kd.register_all_modules()


def test_linear_connector_maps_last_dim():
    torch.manual_seed(0)
    connector = LinearConnector(4, 6)
    x = torch.randn(2, 5, 4)
    expected = x @ connector.proj.weight.t() + connector.proj.bias
    torch.testing.assert_close(connector(x), expected)


def test_linear_connector_identity_for_equal_widths():
    x = torch.randn(2, 5, 4)
    assert LinearConnector(4, 4)(x) is x
    assert list(LinearConnector(4, 4).parameters()) == []
    projected = LinearConnector(4, 4, identity_if_equal=False, bias=False)
    assert isinstance(projected.proj, nn.Linear)
    assert projected.proj.bias is None


def test_linear_connector_shape_error():
    with pytest.raises(ValueError,
                       match=r'expects 32 channels last, got shape '
                       r'\(2, 17, 16\)'):
        LinearConnector(32, 48)(torch.zeros(2, 17, 16))


def test_conv_connector_values_and_layers():
    torch.manual_seed(0)
    connector = ConvConnector(4, 6, kernel_size=3)
    x = torch.randn(2, 4, 5, 5)
    conv = connector.layers[0]
    expected = F.conv2d(x, conv.weight, conv.bias, padding=1)
    out = connector(x)
    assert out.shape == (2, 6, 5, 5)
    torch.testing.assert_close(out, expected)
    normed = ConvConnector(4, 6, norm=True, act=True)
    assert normed.layers[0].bias is None
    assert [type(m) for m in normed.layers] == [
        nn.Conv2d, nn.BatchNorm2d, nn.ReLU
    ]


@pytest.mark.parametrize('shape', [(2, 8, 4, 4), (2, 16, 4)])
def test_conv_connector_shape_error(shape):
    with pytest.raises(ValueError,
                       match=re.escape(f'expects (B, 16, H, W), got {shape}')):
        ConvConnector(16, 32)(torch.zeros(shape))
