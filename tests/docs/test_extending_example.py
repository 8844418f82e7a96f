"""The worked example of docs/extending.md runs as documented."""
import json
import os.path as osp
import sys

from mmengine.config import Config
from mmengine.runner import Runner

import cls_kd

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
EXAMPLES = osp.join(ROOT, 'docs', 'examples')
CONFIG = osp.join(EXAMPLES,
                  'mse_logits_resnet18-c16_vit-t4-p8_1xb64_digits.py')


def test_user_loss_and_distiller_train(small_digits_cfg, tmp_path,
                                       monkeypatch):
    monkeypatch.syspath_prepend(EXAMPLES)  # as PYTHONPATH=docs/examples
    cls_kd.register_all_modules(init_default_scope=False)
    cfg = Config.fromfile(CONFIG)
    assert cfg.model.type == 'LoggingDistiller'
    assert list(cfg.model.losses) == ['loss_mse']
    cfg.model.teacher.random_init = True
    small_digits_cfg(cfg, tmp_path, train_images=16, batch_size=8)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    runner = Runner.from_cfg(cfg)
    assert type(runner.model).__name__ == 'LoggingDistiller'
    assert 'my_losses' in sys.modules
    runner.train()
    with open(osp.join(runner.log_dir, 'vis_data', 'scalars.json')) as f:
        records = [json.loads(line) for line in f]
    logged = [r for r in records if 'loss_mse' in r]
    assert logged and all(0.0 <= r['agreement'] <= 1.0 for r in logged)
    # 'agreement' has no 'loss' in its name: logged, not in the total.
    for r in logged:
        assert abs(r['loss'] - r['loss_cls'] - r['loss_mse']) < 1e-3
