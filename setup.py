"""Install cls_kd: ``pip install -e .``.

mmcv is deliberately absent from ``install_requires``: ``mmcv`` (full, with
CUDA ops) and ``mmcv-lite`` install into the same ``mmcv`` package, and a
user who already has full mmcv for mmdet/mmseg must keep it. ``make env``
installs ``mmcv-lite`` only when no ``mmcv`` is importable.
"""
import os.path as osp

from setuptools import find_packages, setup


def read_requirements(name):
    path = osp.join(osp.dirname(__file__), 'requirements', name)
    with open(path) as f:
        lines = (line.split('#')[0].strip() for line in f)
        return [line for line in lines if line and not line.startswith('-')]


def read_version():
    scope = {}
    with open(osp.join(osp.dirname(__file__), 'cls_kd', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


setup(
    name='cls_kd',
    version=read_version(),
    description='Knowledge distillation for image classification, centred '
    'on vision transformers, on mmengine + mmpretrain',
    long_description=open('README.md').read()
    if osp.exists('README.md') else '',
    long_description_content_type='text/markdown',
    license='Apache License 2.0',
    packages=find_packages(exclude=('configs', 'tools', 'tests', 'docs')),
    # configs/ and model-index.yml, linked as cls_kd/.mim/, go into wheels:
    # where mmengine finds `cls_kd::` configs (as for mmpretrain::).
    package_data={
        'cls_kd': ['.mim/model-index.yml', '.mim/configs/**/*']
    },
    python_requires='>=3.9',
    install_requires=read_requirements('runtime.txt'),
    extras_require={
        'tests': read_requirements('tests.txt'),
        # tools/train.py --tensorboard
        'tensorboard': ['tensorboard'],
    },
    zip_safe=False,
)
