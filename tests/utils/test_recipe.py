"""recipe_facts: one behaviour, one fact, however a config spells it; and
tools/analysis/print_recipe.py on top of it."""
import os.path as osp

import pytest
from mmengine.config import Config

from cls_kd.utils.recipe import recipe_facts


def _cfg(**parts):
    base = dict(
        model=dict(type='ImageClassifier',
                   backbone=dict(type='ResNet', depth=18),
                   head=dict(type='LinearClsHead',
                             loss=dict(type='CrossEntropyLoss'))),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1,
                                          momentum=0.9,
                                          weight_decay=1e-4)),
        train_dataloader=dict(batch_size=32, dataset=dict(pipeline=[])),
        train_cfg=dict(by_epoch=True, max_epochs=100),
    )
    base.update(parts)
    cfg = Config(base)
    # As Config.fromfile would record it: the GPU count is in the name.
    super(Config, cfg).__setattr__('_filename',
                                   'configs/x/x_r34_r18_8xb32_in1k.py')
    return cfg


def test_no_exemption_reads_the_same_however_spelled():
    absent = recipe_facts(_cfg())
    ones = _cfg()
    ones.optim_wrapper.paramwise_cfg = dict(
        norm_decay_mult=1.0, bias_decay_mult=1,
        custom_keys={'.cls_token': dict(decay_mult=1.0)})
    assert absent['decay_exempt'] == recipe_facts(ones)['decay_exempt'] == {}


def test_exemptions_listed_by_kind():
    cfg = _cfg()
    cfg.optim_wrapper.paramwise_cfg = dict(
        norm_decay_mult=0., flat_decay_mult=0.,
        custom_keys={'.pos_embed': dict(decay_mult=0.),
                     'head': dict(lr_mult=10.)})
    facts = recipe_facts(cfg)
    assert facts['decay_exempt'] == {'norm': 0., '1-D': 0.,
                                     'key:.pos_embed': 0.}
    assert facts['lr_mult'] == {'key:head': 10.}


def test_schedule_end_points_and_batch():
    cfg = _cfg(param_scheduler=[
        dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=5,
             convert_to_iter_based=True),
        dict(type='CosineAnnealingLR', by_epoch=True, begin=5)
    ])
    cfg.optim_wrapper.accumulative_counts = 4
    facts = recipe_facts(cfg)
    assert (facts['warmup.epochs'], facts['warmup.start_factor']) == (5,
                                                                      1e-3)
    # mmengine's CosineAnnealingLR ends at 0 unless told otherwise.
    assert (facts['schedule.type'], facts['schedule.eta_min']) == (
        'CosineAnnealingLR', 0.)
    # 8 GPUs (file name) x 32 x 4 accumulated steps.
    assert facts['global_batch'] == 1024
    assert recipe_facts(cfg, gpus=2)['global_batch'] == 256
    step = recipe_facts(_cfg(param_scheduler=dict(
        type='MultiStepLR', milestones=[30, 60, 90])))
    assert step['warmup.epochs'] == 0
    assert (step['schedule.milestones'], step['schedule.gamma']) == (
        [30, 60, 90], 0.1)


def test_augmentation_and_hooks():
    cfg = _cfg(custom_hooks=[dict(type='EMAHook', momentum=4e-5)])
    cfg.train_dataloader.dataset = dict(
        type='RepeatDataset', dataset=dict(pipeline=[
            dict(type='RandAugment', num_policies=2, magnitude_level=9,
                 magnitude_std=0.5, total_level=10),
            dict(type='RandomErasing', erase_prob=0.25)]))
    cfg.model.train_cfg = dict(augments=[dict(type='Mixup', alpha=0.8)])
    cfg.model.head.loss = dict(type='LabelSmoothLoss', label_smooth_val=0.1)
    facts = recipe_facts(cfg)
    assert facts['randaugment'] == (2, 9, 0.5, 10)
    assert facts['random_erasing'] == 0.25
    assert (facts['mixup'], facts['cutmix']) == (0.8, None)
    assert facts['label_smoothing'] == 0.1
    assert facts['ema'] == 4e-5
    assert recipe_facts(_cfg())['ema'] is None


def test_distiller_reads_student_and_teachers():
    cfg = _cfg()
    student = cfg.model
    cfg.model = dict(type='ClassificationDistiller', student=student,
                     teacher=dict(config='t.py', train_mode=True),
                     losses=dict(loss_kd=dict(type='KDLoss',
                                              loss_weight=0.5)),
                     student_loss_weight=0.5)
    cfg.model.student.backbone.drop_path_rate = 0.05
    facts = recipe_facts(cfg)
    assert facts['teacher.train_mode'] == {'teacher': True}
    assert facts['drop_path'] == 0.05
    assert facts['loss.loss_kd.weight'] == 0.5


def test_print_recipe_diff(capsys, repo_root, tool_loader):
    tool = tool_loader('tools/analysis/print_recipe.py')
    kd = osp.join(repo_root, 'configs/kd/kd_resnet34_resnet18_8xb64_in1k.py')
    dkd = osp.join(repo_root,
                   'configs/dkd/dkd_resnet34_resnet18_8xb64_in1k.py')
    assert tool.main([kd, '--diff', dkd]) == 0
    out = capsys.readouterr().out
    assert 'loss.loss_kd.type' in out and 'loss.loss_dkd.type' in out
    assert 'optimizer.lr' not in out  # same schedule: not listed
    assert tool.main([kd, '--diff', kd]) == 0
    assert '(same recipe)' in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        tool.main(['nope.py'])
    assert info.value.code == 2  # a usage error, naming the file
    assert "argument config: config 'nope.py' not found" in (
        capsys.readouterr().err)
