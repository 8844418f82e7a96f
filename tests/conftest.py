"""Shared fixtures: the digits dataset written once per test session."""
import os.path as osp
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.fixture(scope='session')
def repo_root():
    return ROOT


@pytest.fixture(scope='session')
def digits_root(tmp_path_factory):
    """scikit-learn digits as an ImageNet-style folder (our converter)."""
    sys.path.insert(0, osp.join(ROOT, 'tools', 'dataset_converters'))
    try:
        import digits
    finally:
        sys.path.pop(0)
    out = str(tmp_path_factory.mktemp('digits'))
    counts = digits.convert(out)
    assert counts == {'train': 1438, 'val': 359}
    return out
