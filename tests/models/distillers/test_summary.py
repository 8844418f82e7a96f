"""The build-time summary of a distiller (and its tool)."""
import importlib.util
import logging
import os.path as osp

import pytest
import torch
from mmengine.logging import MMLogger

import cls_kd
from cls_kd.models.distillers.summary import distiller_summary
from cls_kd.registry import MODELS

cls_kd.register_all_modules()

PREPROCESSOR = dict(num_classes=10, mean=[0., 0., 0.], std=[1., 1., 1.])


class _Records(logging.Handler):

    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def teacher_ckpt(tiny_vit, tmp_path):
    """A checkpoint of the 3-block, 48-wide teacher."""
    torch.manual_seed(2)
    teacher = MODELS.build(tiny_vit(48, 3))
    path = str(tmp_path / 'teacher.pth')
    torch.save({'state_dict': teacher.state_dict()}, path)
    return path, len(teacher.state_dict())


def build(tiny_vit, teacher, **kwargs):
    cfg = dict(
        type='ClassificationDistiller',
        student=tiny_vit(32, 2),
        teacher=dict(config=tiny_vit(48, 3), **teacher),
        data_preprocessor=PREPROCESSOR,
        student_loss_weight=0.3,
        taps=dict(
            s_tok=dict(path='backbone.layers.1', selector='patch_tokens'),
            t_tok=dict(model='teacher', path='backbone.layers.2',
                       selector='patch_tokens')),
        connectors=dict(
            proj=dict(type='LinearConnector', in_channels=32,
                      out_channels=48)),
        losses=dict(
            loss_kd=dict(type='KDLoss', temperature=4.0, loss_weight=0.7,
                         inputs=dict(logits_s='logits_s',
                                     logits_t='logits_t')),
            loss_mse=dict(type='FeatureMSELoss', loss_weight=2.0,
                          warmup=dict(by='epoch', length=5),
                          inputs=dict(preds='proj(s_tok)',
                                      targets='t_tok'))),
        stages=[dict(end=8), dict(distill=False, student_loss_weight=1.)])
    cfg.update(kwargs)
    return MODELS.build(cfg)


def test_summary_lists_what_was_built(tiny_vit, teacher_ckpt):
    path, keys = teacher_ckpt
    model = build(tiny_vit, dict(checkpoint=path))
    text = distiller_summary(model)
    lines = text.splitlines()
    assert lines[0] == ' cls_kd distiller summary '.center(78, '=')
    assert lines[-1] == '=' * 78
    assert f'    checkpoint: {path} ({keys}/{keys} keys loaded)' in lines
    assert '    config: a model dict (ImageClassifier)' in lines
    teacher_params = sum(
        p.numel() for p in model.teachers['teacher'].parameters())
    assert (f'  teacher: ImageClassifier(VisionTransformer), '
            f'{teacher_params / 1e3:.1f} K parameters (frozen)') in lines
    # Shapes from the dry run: 2 images, 4x4 patch tokens.
    assert ('  s_tok: student:backbone.layers.1, selector patch_tokens -> '
            'Tensor(2, 16, 32)') in lines
    assert ('  t_tok: teacher:backbone.layers.2, selector patch_tokens -> '
            'Tensor(2, 16, 48)') in lines
    assert '  proj: LinearConnector, 1.6 K parameters' in lines  # 32*48+48
    assert ("  loss_cls: the student's own loss x 0.3 "
            '(student_loss_weight)') in lines
    assert ('  loss_kd: KDLoss(loss_weight=0.7, temperature=4) <- '
            'logits_s=logits_s, logits_t=logits_t') in lines
    kd = lines.index('  loss_kd: KDLoss(loss_weight=0.7, temperature=4) <- '
                     'logits_s=logits_s, logits_t=logits_t')
    assert lines[kd + 1] == '    schedule: constant (factor 1)'
    mse = next(i for i, line in enumerate(lines)
               if line.startswith('  loss_mse: FeatureMSELoss('))
    assert 'loss_weight=2' in lines[mse]
    assert lines[mse].endswith('<- preds=proj(s_tok), targets=t_tok')
    assert lines[mse + 1] == (
        '    schedule: linear by epoch (begin=-1, end=4, start_factor=0.0, '
        'end_factor=1.0)')
    assert lines[-3:-1] == [
        '  epochs [0, 8): distil all terms',
        '  epochs [8, end): no distillation (teachers not run), '
        'student_loss_weight 1'
    ]


def test_summary_is_logged_at_build(tiny_vit):
    records = _Records()
    logger = MMLogger.get_current_instance()
    logger.addHandler(records)
    try:
        build(tiny_vit, dict(checkpoint=None, random_init=True))
    finally:
        logger.removeHandler(records)
    summaries = [m for m in records.messages if 'cls_kd distiller summary'
                 in m]
    assert len(summaries) == 1
    assert '    weights: RANDOM (no checkpoint)' in summaries[0]


def test_summary_without_dry_run_has_no_shapes(tiny_vit):
    model = build(tiny_vit, dict(checkpoint=None, random_init=True),
                  dry_run=False)
    assert ('  s_tok: student:backbone.layers.1, selector patch_tokens -> '
            'unknown (no dry run)') in distiller_summary(model).splitlines()


def test_summary_tool(repo_root, capsys):
    path = osp.join(repo_root, 'tools', 'analysis', 'distiller_summary.py')
    spec = importlib.util.spec_from_file_location('summary_tool', path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    text = tool.main([
        osp.join(repo_root,
                 'configs/kd/kd_resnet18-c16_vit-t4-p8_1xb64_digits.py'),
        '--random-teachers'
    ])
    assert ('  loss_kd: KDLoss(loss_weight=0.5, temperature=4) <- '
            'logits_s=logits_s, logits_t=logits_t') in text.splitlines()
    assert "  loss_cls: the student's own loss x 0.5" in text
    assert capsys.readouterr().out.count('cls_kd distiller summary') == 1


def _build_messages(tiny_vit, **kwargs):
    records = _Records()
    logger = MMLogger.get_current_instance()
    logger.addHandler(records)
    try:
        build(tiny_vit, dict(checkpoint=None, random_init=True), **kwargs)
    finally:
        logger.removeHandler(records)
    return records.messages


def test_a_tap_no_loss_reads_is_named(tiny_vit):
    taps = dict(
        s_tok=dict(path='backbone.layers.1', selector='patch_tokens'),
        t_tok=dict(model='teacher', path='backbone.layers.2',
                   selector='patch_tokens'),
        s_spare=dict(path='backbone.layers.0', selector='cls_token'))
    unread = [m for m in _build_messages(tiny_vit, taps=taps)
              if 'read by no loss' in m]
    assert unread == [
        "Taps ['s_spare'] are read by no loss: they are captured at every "
        'step for nothing. Remove them from model.taps, or read them in a '
        "loss's inputs."
    ]
    # Every tap read: no warning.
    assert not [m for m in _build_messages(tiny_vit)
                if 'read by no loss' in m]
