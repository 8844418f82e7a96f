"""A checkpoint written by cls_kd before the distiller family (core v2) --
a DKD digits run with an epoch warm-up, saved after epoch 1 of 2 -- resumes
with today's code: the resumed run starts from the checkpoint's weights,
bit for bit, and finishes its second epoch."""
import os.path as osp
import shutil

import torch
from mmengine.config import Config
from mmengine.runner import Runner

import cls_kd

cls_kd.register_all_modules(init_default_scope=False)

CONFIG = 'configs/dkd/dkd_resnet18-c16_vit-t4-p8_1xb64_digits.py'
CHECKPOINT = 'tests/data/dkd_digits_epoch_1_before_core_v2.pth'


def test_old_checkpoint_resumes(repo_root, small_digits_cfg, tmp_path):
    cfg = Config.fromfile(osp.join(repo_root, CONFIG))
    cfg.model.teacher.checkpoint = None
    cfg.model.teacher.random_init = True
    # As it was written: 16 images in batches of 8, 2 epochs, constant lr.
    small_digits_cfg(cfg, tmp_path / 'work', train_images=16, batch_size=8,
                     epochs=2)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.param_scheduler = [
        dict(type='ConstantLR', factor=1.0, by_epoch=True, begin=0, end=2)
    ]
    (tmp_path / 'before').mkdir()
    checkpoint = str(tmp_path / 'before' / 'epoch_1.pth')
    shutil.copy(osp.join(repo_root, CHECKPOINT), checkpoint)
    cfg.resume, cfg.load_from = True, checkpoint
    runner = Runner.from_cfg(cfg)
    seen, start = [], {}

    def first_step(*args):
        # The teacher runs before the student in a step: at the first call
        # of the resumed run nothing has been updated yet.
        seen.append(runner.model.progress)
        if not start:
            start.update({k: v.clone()
                          for k, v in runner.model.state_dict().items()})

    runner.model.teachers['teacher'].register_forward_hook(first_step)
    runner.train()
    assert (runner.epoch, runner.iter) == (2, 4)
    # Resumed in epoch 1 (0-based): DKD's 3-epoch warm-up is at 2/3.
    assert [p.epoch for p in seen] == [1, 1]
    old = torch.load(checkpoint, weights_only=False)['state_dict']
    new = runner.model.state_dict()
    assert set(old) == set(new) == set(start)
    for key, value in old.items():  # loaded, not freshly initialised
        assert torch.equal(start[key], value), key
    weight = 'student.backbone.layers.0.attn.qkv.weight'
    assert not torch.equal(old[weight], new[weight])  # it trained on
