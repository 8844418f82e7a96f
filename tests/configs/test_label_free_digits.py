"""Label-free distillation of a tiny ViT on digits (generic feature KD and
AttnDistill): the data samples the distiller gets carry no labels, the
student learns, the teacher stays bit for bit what it was, and k-NN
validation runs in mmengine's loop."""
import copy
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

import cls_kd

cls_kd.register_all_modules(init_default_scope=False)

CONFIGS = {
    'configs/feature/feat_deit3-6x128-p8_vit-4x32-p8_1xb64_digits.py':
    {'loss_cls_cos', 'loss_patch_mse'},
    'configs/attndistill/attndistill_vit-4x64-p8_vit-4x32-p8_1xb64_digits.py':  # noqa: E501
    {'loss_align', 'loss_attn'},
}


class _RecordBatches(Hook):

    def __init__(self):
        self.samples, self.losses = [], []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.samples.extend(data_batch['data_samples'])

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.losses.append({k: float(v) for k, v in outputs.items()})


@pytest.mark.parametrize('config', sorted(CONFIGS))
def test_label_free_digits_run(config, repo_root, small_digits_cfg,
                               tmp_path):
    cfg = Config.fromfile(osp.join(repo_root, config))
    cfg.model.teacher.checkpoint = None
    cfg.model.teacher.random_init = True
    small_digits_cfg(cfg, tmp_path, train_images=64, batch_size=16,
                     epochs=3)
    cfg.val_dataloader.dataset.indices = 32
    runner = Runner.from_cfg(cfg)
    record = _RecordBatches()
    runner.register_hook(record)
    assert type(runner.model).__name__ == 'LabelFreeDistiller'
    assert not hasattr(runner.model.student, 'head')
    teacher = runner.model.teachers['teacher']
    before = copy.deepcopy(teacher.state_dict())
    runner.train()
    assert len(record.samples) == 3 * 64
    assert all('gt_label' not in s and 'gt_score' not in s
               for s in record.samples)
    assert set(record.losses[0]) == {'loss', *CONFIGS[config]}
    first, last = record.losses[0]['loss'], record.losses[-1]['loss']
    assert last < first  # it learns from the (random, frozen) teacher
    assert torch.isfinite(torch.tensor(last))
    after = teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # Validated by k-NN on the student's class token (bank: 64 labelled
    # train images), labels read only there.
    top1 = runner.message_hub.get_scalar('val/knn/top1').current()
    assert 0 <= top1 <= 100
