"""What tools/test.py writes (mmpretrain's --out / --out-item), the
teacher-agreement metrics of the digits distiller configs, and mmpretrain's
own tools/test.py on a cls_kd config."""
import importlib.util
import json
import os.path as osp
import subprocess
import sys

import mmengine
import pytest
import torch
from mmengine.config import Config

import cls_kd
from cls_kd.registry import MODELS

cls_kd.register_all_modules(init_default_scope=False)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
KD_CFG = osp.join(ROOT, 'configs/kd/kd_resnet18-c16_vit-t4-p8_1xb64_digits.py')
RANDOM_TEACHER = 'model.teacher.random_init=True'
N_VAL = 64  # of the 359 digits val images


def _test_tool():
    path = osp.join(ROOT, 'tools', 'test.py')
    spec = importlib.util.spec_from_file_location('outputs_test_tool', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _data_options(digits_root):
    return [
        f'test_dataloader.dataset.data_root={digits_root}',
        f'test_dataloader.dataset.indices={N_VAL}',
        'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False'
    ]


@pytest.fixture(scope='module')
def kd_checkpoint(tmp_path_factory):
    """A KD distiller checkpoint (random student, random teacher)."""
    cfg = Config.fromfile(KD_CFG)
    model_cfg = dict(cfg.model, data_preprocessor=cfg.data_preprocessor)
    model_cfg['teacher'] = dict(model_cfg['teacher'], random_init=True)
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    path = str(tmp_path_factory.mktemp('kd_ckpt') / 'kd.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return path


def test_predictions_and_teacher_metrics(kd_checkpoint, digits_root,
                                         tmp_path):
    preds = str(tmp_path / 'preds.pkl')
    metrics = _test_tool().main([
        KD_CFG, kd_checkpoint, '--work-dir', str(tmp_path), '--out', preds,
        '--cfg-options', RANDOM_TEACHER, *_data_options(digits_root)
    ])
    results = mmengine.load(preds)
    assert len(results) == N_VAL
    student = torch.stack([r['pred_score'] for r in results])
    teacher = torch.stack([r['teacher_score'] for r in results])
    labels = torch.cat([r['gt_label'] for r in results])
    agree = (student.argmax(1) == teacher.argmax(1)).double().mean() * 100
    correct = (teacher.argmax(1) == labels).double().mean() * 100
    assert metrics['teacher/agreement'] == pytest.approx(agree.item())
    assert metrics['teacher/top1'] == pytest.approx(correct.item())
    assert metrics['teacher/kl'] > 0
    assert 'accuracy/top1' in metrics


def test_metrics_file_as_before_and_with_out_item(kd_checkpoint, digits_root,
                                                  tmp_path):
    tool = _test_tool()
    as_before = str(tmp_path / 'metrics.json')
    metrics = tool.main([
        KD_CFG, kd_checkpoint, '--work-dir', str(tmp_path), '--out',
        as_before, '--cfg-options', RANDOM_TEACHER,
        *_data_options(digits_root)
    ])
    with open(as_before) as f:
        assert json.load(f) == pytest.approx(metrics)
    yaml_out = str(tmp_path / 'metrics.yaml')
    tool.main([
        KD_CFG, kd_checkpoint, '--work-dir', str(tmp_path), '--out',
        yaml_out, '--out-item', 'metrics', '--cfg-options', RANDOM_TEACHER,
        *_data_options(digits_root)
    ])
    assert mmengine.load(yaml_out) == pytest.approx(metrics)


@pytest.mark.slow
def test_mmpretrain_test_tool_runs_our_config(kd_checkpoint, digits_root,
                                              tmp_path):
    """mmpretrain's tools/test.py imports nothing of cls_kd: with
    default_scope='cls_kd' the registries must find mmpretrain's
    UniversalVisualizer, datasets and transforms by themselves."""
    import mmpretrain
    script = osp.join(osp.dirname(mmpretrain.__file__), '.mim', 'tools',
                      'test.py')
    preds = str(tmp_path / 'preds.pkl')
    proc = subprocess.run(
        [
            sys.executable, script, KD_CFG, kd_checkpoint, '--work-dir',
            str(tmp_path), '--out', preds, '--cfg-options', RANDOM_TEACHER,
            *_data_options(digits_root)
        ],
        cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = mmengine.load(preds)
    assert len(results) == N_VAL and 'teacher_score' in results[0]
    assert 'teacher/agreement' in proc.stdout + proc.stderr
