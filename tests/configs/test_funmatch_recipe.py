"""The FunMatch config: the recipe of the official ImageNet config
(big_vision's bit_i1k.py) on ScaleKD's Swin-L -> ResNet-50 pair, and the
"consistent teaching" it relies on: the teacher sees the student's
augmented, mixed-up images."""
import os.path as osp
import re

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmpretrain.structures import DataSample

import cls_kd
from cls_kd.registry import MODELS
from cls_kd.utils.recipe import recipe_facts

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
README = osp.join(ROOT, 'configs', 'funmatch', 'README.md')

FM = 'funmatch/funmatch_swin-large_resnet50_8xb512-1200e_in1k'
ROW = 'scalekd/scalekd_swin-large_resnet50_8xb256-300e_in1k'
DIGITS = 'dist_resnet18-c16_vit-t4-p8_1xb64_digits.py'
BV = 'google-research/big_vision@0127fb6:big_vision'
CFG = f'{BV}/configs/proj/distill/bit_i1k.py'
TRAINER = f'{BV}/trainers/proj/distill/distill.py'
OPTAX = f'{BV}/optax.py'
UTILS = f'{BV}/utils.py'
PP = f'{BV}/pp/ops_image.py'

FACTS = [
    (FM, 'global_batch', 4096, f'{CFG}:44'),
    (FM, 'epochs', 1200, f'{CFG}:48'),
    (FM, 'train.crop', (224, (0.05, 1.0), 'bilinear'),
     f'{CFG}:71, {PP}:199-201'),
    (FM, 'train.aspect', (0.75, 1.33), f'{PP}:199-201'),
    (FM, 'train.flip', (0.5, 'horizontal'), f'{CFG}:71'),
    (FM, 'randaugment', None, f'{CFG}:70-73'),
    (FM, 'autoaugment', None, f'{CFG}:70-73'),
    (FM, 'random_erasing', 0.0, f'{CFG}:70-73'),
    (FM, 'test.resize', (256, 'area'), f'{CFG}:74, {PP}:108'),
    (FM, 'test.crop', 224, f'{CFG}:74'),
    (FM, 'mixup', 1.0, f'{CFG}:76, {UTILS}:1146-1154'),
    (FM, 'cutmix', None, f'{CFG}:76'),
    (FM, 'student_loss_weight', 0.0, f'{TRAINER}:240-248'),
    (FM, 'loss.loss_kd.type', 'KDLoss', f'{CFG}:79'),
    (FM, 'loss.loss_kd.form', 'kl',
     f'{BV}/evaluators/proj/distill/distance.py:50-54'),
    (FM, 'loss.loss_kd.temperature', 1.0, f'{CFG}:80'),
    (FM, 'loss.loss_kd.weight', 1.0, f'{TRAINER}:241-245'),
    (FM, 'grad_clip', 1.0, f'{CFG}:83, {OPTAX}:100-107'),
    (FM, 'optimizer.type', 'AdamW', f'{CFG}:84, {OPTAX}:132-150'),
    (FM, 'optimizer.betas', (0.9, 0.999), f'{CFG}:84 (optax defaults)'),
    (FM, 'optimizer.eps', 1e-8, f'{CFG}:84 (optax defaults)'),
    (FM, 'optimizer.lr', 0.03, f'{CFG}:87'),
    # big_vision's decay is wd x param per step (times the schedule, not
    # the lr); AdamW's is lr x weight_decay x param.
    (FM, 'decoupled_wd', 3e-4, f'{CFG}:88, {OPTAX}:132-150'),
    (FM, 'decay_exempt', {'bias': 0.0, 'norm': 0.0}, f'{OPTAX}:133'),
    (FM, 'warmup.by_epoch', False, f'{CFG}:89'),
    (FM, 'warmup.epochs', 5000, f'{CFG}:89'),  # iterations (by_epoch False)
    (FM, 'warmup.start_factor', 0.0, f'{UTILS}:1136-1137'),
    (FM, 'schedule.type', 'CosineAnnealingLR', f'{CFG}:89'),
    (FM, 'schedule.eta_min', 0.0, f'{UTILS}:1119-1120'),
    (FM, 'schedule.end', 1200, f'{CFG}:48'),
    (FM, 'ema', None, f'{TRAINER}:253-285'),
    (FM, 'teacher.train_mode', {'teacher': False}, f'{TRAINER}:226'),
    (FM, 'drop_path', 0.0, f'{BV}/models/bit_paper.py:82-110'),
    (FM, 'taps', [], f'{TRAINER}:228'),
]

# (config, fact) -> (the official value, source). Ours: the student and
# teacher of ScaleKD's row (the pair ScaleKD's table compares on), the
# full training split and the student's own input normalisation; each is
# listed in the README's "Differences from the official code".
DELIBERATE = {
    (FM, 'student.backbone'): ('BiT ResNet-v2 50x1', f'{CFG}:55-56'),
    (FM, 'teacher.model'): ('BiT-M R152x2', f'{CFG}:58-63'),
    (FM, 'train.split'): ('train[:98%]', f'{CFG}:43'),
    (FM, 'input.mean'): ([127.5] * 3, f'{CFG}:66'),
}
# Ours, where it is not the ScaleKD row's.
OURS = {'train.split': 'train', 'input.mean': [123.675, 116.28, 103.53]}

_cache = {}


def load(name):
    if name not in _cache:
        _cache[name] = Config.fromfile(
            osp.join(ROOT, 'configs', name + '.py'))
    return _cache[name]


def transform(cfg, name, split='train'):
    pipeline = cfg[f'{split}_dataloader'].dataset.pipeline
    return next(t for t in pipeline if t['type'] == name)


def fact(cfg, key):
    """A fact of the resolved config: recipe_facts' vocabulary, plus what
    it has no key for."""
    model = cfg.model
    if key == 'taps':
        return sorted(model.get('taps') or {})
    if key == 'teacher.model':
        return re.search(r'swin-[a-z]+', model.teacher.config).group(0)
    if key == 'train.aspect':
        return transform(cfg, 'RandomResizedCrop')['aspect_ratio_range']
    if key == 'train.flip':
        flip = transform(cfg, 'RandomFlip')
        return flip['prob'], flip['direction']
    if key == 'train.split':
        dataset = cfg.train_dataloader.dataset
        return dataset.get('split') or dataset.data_prefix
    if key == 'input.mean':
        return list(cfg.data_preprocessor.mean)
    match = re.fullmatch(r'loss\.(\w+)\.(temperature|form)', key)
    if match:
        return model.losses[match.group(1)][match.group(2)]
    facts = recipe_facts(cfg)
    if key == 'decoupled_wd':
        return facts['optimizer.lr'] * facts['optimizer.weight_decay']
    return facts[key]


@pytest.mark.parametrize('config, key, official, source', FACTS,
                         ids=[f'{k}' for _, k, _, _ in FACTS])
def test_official_value(config, key, official, source):
    assert (config, key) not in DELIBERATE
    ours = fact(load(config), key)
    if isinstance(official, float):
        assert ours == pytest.approx(official, rel=1e-9), source
    else:
        assert ours == official, source


@pytest.mark.parametrize('config, key', sorted(DELIBERATE),
                         ids=[k for _, k in sorted(DELIBERATE)])
def test_deliberate_difference_is_listed(config, key):
    official, source = DELIBERATE[(config, key)]
    ours = fact(load(config), key)
    if key in OURS:
        assert ours == OURS[key]
    elif key == 'student.backbone':
        assert load(config).model.student.backbone.type == \
            load(ROW).model.student.backbone.type
    else:
        assert ours == fact(load(ROW), key)
    assert ours != official, source
    with open(README) as f:
        differences = f.read().split(
            '## Differences from the official code')[1].split('\n## ')[0]
    assert f'| `{key}` |' in differences


def test_student_is_the_scalekd_rows_but_drop_path():
    ours, row = load(FM).model.student, load(ROW).model.student
    assert {**ours.backbone, 'drop_path_rate': None} == {
        **row.backbone, 'drop_path_rate': None}
    assert ours.head == row.head


def test_teacher_sees_the_students_mixed_up_images():
    """One Mixup per batch, in the distiller's preprocessor: both models
    get the same mixed images (digits models, to stay small)."""
    cls_kd.register_all_modules()
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'dist', DIGITS))
    cfg.model.student.train_cfg = dict(
        augments=[dict(type='Mixup', alpha=1.0)])
    cfg.model.teacher.random_init = True
    cfg.model.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    model = MODELS.build(cfg.model)
    model.train()
    seen = {}
    model.teachers[model.teachers.first].register_forward_pre_hook(
        lambda module, args: seen.__setitem__('teacher', args[0].clone()))
    model.student.backbone.register_forward_pre_hook(
        lambda module, args: seen.__setitem__('student', args[0].clone()))
    torch.manual_seed(0)
    np.random.seed(0)
    batch = dict(
        inputs=[torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
                for _ in range(8)],
        data_samples=[DataSample().set_gt_label(i % 10) for i in range(8)])
    plain = model.data_preprocessor(batch, False)['inputs']
    data = model.data_preprocessor(batch, True)
    model(**data, mode='loss')
    assert torch.equal(seen['teacher'], seen['student'])
    assert torch.equal(seen['student'], data['inputs'])
    assert (seen['student'] - plain).abs().max() > 0.1  # mixed
    assert data['data_samples'][0].gt_score.shape == (10, )
