"""DearKD on digits: the hidden-state term computed by hand, which
parameters it trains, and the two stages through a real run and a resume
(teacher not called after the switch, its terms gone from the log)."""
import json
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.runner import Runner
from mmpretrain.structures import DataSample

import cls_kd
from cls_kd.registry import MODELS

cls_kd.register_all_modules()

DEARKD_DIGITS = ('configs/dearkd/'
                 'dearkd_resnet18-c16_vit-4x64-p4_1xb64_digits.py')


def _model(repo_root):
    cfg = Config.fromfile(osp.join(repo_root, DEARKD_DIGITS))
    cfg.model.teacher.random_init = True
    cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    torch.manual_seed(0)
    return MODELS.build(cfg.model)


def test_hidden_term_by_hand_and_what_it_trains(repo_root):
    model = _model(repo_root)
    model.train()
    model.set_progress(epoch=0, iter=0)
    inputs = torch.randn(4, 3, 32, 32)
    samples = [DataSample().set_gt_label(k) for k in range(4)]
    captured = {}
    blocks = model.student.backbone.layers
    for i in (0, 1):
        blocks[i].register_forward_hook(
            lambda m, a, out, i=i: captured.__setitem__(i, out))
    teacher = model.teachers['teacher'].backbone
    for name in ('layer2', 'layer3'):
        getattr(teacher, name).register_forward_hook(
            lambda m, a, out, name=name: captured.__setitem__(name, out))
    losses = model.loss(inputs, samples)
    assert set(losses) == {'loss_cls', 'cls_unweighted', 'loss_deit',
                           'loss_hidden'}

    # By hand: patch tokens (after class + distillation token) on the 8x8
    # grid, 1x1 aligner, MSE (mean) against the teacher map average-pooled
    # to 8x8; one term per block, summed.
    def student_map(i):
        tokens = captured[i][:, 2:]
        grid = tokens.transpose(1, 2).reshape(4, 64, 8, 8)
        conv = model.connectors[f'align{i}'].layers[0]
        return F.conv2d(grid, conv.weight, conv.bias)

    assert captured['layer2'].shape == (4, 32, 16, 16)
    target2 = F.avg_pool2d(captured['layer2'], 2)
    expected = F.mse_loss(student_map(0), target2) + F.mse_loss(
        student_map(1), captured['layer3'])
    torch.testing.assert_close(losses['loss_hidden'], expected)

    # The hidden term trains the first two blocks and the aligners, not
    # the later blocks or the heads.
    model.zero_grad()
    losses['loss_hidden'].backward()
    backbone = model.student.backbone
    assert backbone.layers[0].attn.pos_proj.weight.grad.abs().sum() > 0
    assert backbone.layers[1].ffn.layers[1].weight.grad.abs().sum() > 0
    assert model.connectors.align1.layers[0].weight.grad.abs().sum() > 0
    for p in [*backbone.layers[2].parameters(),
              *model.student.head.parameters()]:
        assert p.grad is None or not p.grad.any()


class CountingTeacher:
    """Counts the teacher's forward calls, per training epoch."""

    def __init__(self, runner):
        self.runner, self.epochs = runner, []
        runner.model.teachers['teacher'].register_forward_pre_hook(
            lambda *_: self.epochs.append(runner.epoch))


def _logged(runner):
    with open(osp.join(runner.log_dir, 'vis_data', 'scalars.json')) as f:
        return [json.loads(line) for line in f if '"loss"' in line]


@pytest.mark.parametrize('resume', [False, True])
def test_two_stages_in_a_run_and_on_resume(repo_root, small_digits_cfg,
                                           tmp_path, resume):
    """Stage 1 for one epoch, then no distillation: the teacher is called
    only in epoch 0 (its val pass is cached or skipped here), the hidden and
    token terms leave the log, CE gets weight 1; a run resumed from the
    epoch-1 checkpoint starts in stage 2."""
    cfg = Config.fromfile(osp.join(repo_root, DEARKD_DIGITS))
    cfg.model.teacher.random_init = True
    cfg.model.stages[0].end = 1
    small_digits_cfg(cfg, tmp_path / 'a', train_images=32, batch_size=8,
                     epochs=2)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.train_cfg.val_interval = 100
    cfg.param_scheduler = dict(type='ConstantLR', factor=1.0)
    runner = Runner.from_cfg(cfg.copy())
    counter = CountingTeacher(runner)
    if resume:
        cfg.train_cfg.max_epochs = 1
        Runner.from_cfg(cfg.copy()).train()  # stage 1 only
        cfg.train_cfg.max_epochs = 2
        cfg.resume = True
        cfg.load_from = osp.join(str(tmp_path / 'a'), 'epoch_1.pth')
        cfg.work_dir = str(tmp_path / 'b')
        # Its own experiment name: mmengine names the (singleton) visualizer
        # after the start second, so a run built in the same second as the
        # stage-1 run would log into that run's folder.
        cfg.experiment_name = 'resumed'
        runner = Runner.from_cfg(cfg)
        counter = CountingTeacher(runner)
    runner.train()
    assert runner.epoch == 2
    logged = _logged(runner)
    first = [r for r in logged if r['epoch'] == 1]
    second = [r for r in logged if r['epoch'] == 2]
    assert second and all(
        'loss_hidden' not in r and 'loss_deit' not in r for r in second)
    if resume:
        assert counter.epochs == [] and not first
    else:
        assert set(counter.epochs) == {0} and len(counter.epochs) == 4
        assert first and all({'loss_hidden', 'loss_deit'} <= set(r)
                             for r in first)
    assert runner.model.current_stage().student_loss_weight == 1.0
