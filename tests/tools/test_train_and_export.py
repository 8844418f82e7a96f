"""End-to-end contracts through mmengine's Runner on the digits data."""
import copy
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

import cls_kd
from cls_kd.models.distillers import DistillerConfigError
from cls_kd.utils import CheckpointError

cls_kd.register_all_modules(init_default_scope=False)

KD_CFG = 'configs/kd/kd_resnet18-c16_vit-t4-p8_1xb64_digits.py'
STUDENT_CFG = 'configs/digits/vit-t4-p8_1xb64_digits.py'


def _tool(repo_root, name):
    """Import one of tools/*.py as a module."""
    import importlib.util
    path = osp.join(repo_root, 'tools', f'{name}.py')
    spec = importlib.util.spec_from_file_location(f'tool_{name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _kd_cfg(repo_root, small_digits_cfg, work_dir, **extra):
    """The digits KD config for 3 epochs of 3 iterations (random but
    frozen teacher)."""
    cfg = Config.fromfile(osp.join(repo_root, KD_CFG))
    cfg.model.teacher.random_init = True
    small_digits_cfg(cfg, work_dir, train_images=96, batch_size=32)
    cfg.merge_from_dict(extra)
    return cfg


@pytest.fixture(scope='module')
def trained(repo_root, small_digits_cfg, tmp_path_factory):
    """A 3-epoch KD run with EMA; the teacher is random but frozen. Its
last validation's predictions are in ``val_preds`` (a DumpResults
pickle)."""
    work_dir = str(tmp_path_factory.mktemp('kd_run'))
    val_preds = osp.join(work_dir, 'val_preds.pkl')
    cfg = _kd_cfg(
        repo_root, small_digits_cfg, work_dir,
        custom_hooks=[dict(type='EMAHook', momentum=0.1)])
    cfg.val_evaluator = list(cfg.val_evaluator) + [
        dict(type='DumpResults', out_file_path=val_preds)]
    runner = Runner.from_cfg(cfg)
    teacher = runner.model.teachers['teacher']
    before = copy.deepcopy(teacher.state_dict())
    calls = []
    teacher.head.register_forward_hook(lambda *a: calls.append(1))

    def refuse(*args, **kwargs):
        raise AssertionError('the teacher loss must never be computed')

    teacher.head.loss = teacher.head._get_loss = refuse
    runner.train()
    metrics = runner.val_loop.run()
    return dict(runner=runner, before=before, work_dir=work_dir,
                teacher_calls=len(calls), metrics=metrics,
                val_preds=val_preds)


def test_teacher_frozen_through_training(trained):
    runner = trained['runner']
    teacher = runner.model.teachers['teacher']
    assert runner.epoch == 3
    assert trained['teacher_calls'] >= 3 * 3  # 3 epochs x 3 iterations
    assert teacher.training is False
    assert all(not m.training for m in teacher.modules())
    after = teacher.state_dict()
    for key, value in trained['before'].items():
        assert torch.equal(value, after[key]), key  # bit for bit, BN too
    assert all(p.grad is None for p in teacher.parameters())
    optimizer_params = {
        id(p)
        for group in runner.optim_wrapper.optimizer.param_groups
        for p in group['params']
    }
    assert not optimizer_params & {id(p) for p in teacher.parameters()}


def test_checkpoint_holds_student_not_teacher(trained):
    ckpt = torch.load(
        osp.join(trained['work_dir'], 'epoch_3.pth'), weights_only=False)
    keys = list(ckpt['state_dict'])
    assert keys and all(k.startswith('student.') for k in keys)
    ema_keys = [k for k in ckpt['ema_state_dict'] if k != 'steps']
    assert ema_keys and all(k.startswith('module.student.') for k in ema_keys)


def test_log_has_each_loss_term(trained):
    log_dir = trained['runner'].log_dir
    scalars = osp.join(log_dir, 'vis_data', 'scalars.json')
    with open(scalars) as f:
        records = [json.loads(line) for line in f]
    train = [r for r in records if 'loss_kd' in r]
    assert train and all('loss_cls' in r for r in train)
    for r in train:
        assert r['loss'] == pytest.approx(r['loss_cls'] + r['loss_kd'],
                                          abs=1e-3)


def test_resume_continues_after_torch_2_6(trained, repo_root, digits_root,
                                          tmp_path):
    train_tool = _tool(repo_root, 'train')
    argv = [
        osp.join(repo_root, KD_CFG), '--work-dir', str(tmp_path), '--resume',
        osp.join(trained['work_dir'], 'epoch_2.pth'), '--cfg-options',
        f'train_dataloader.dataset.data_root={digits_root}',
        f'val_dataloader.dataset.data_root={digits_root}',
        'train_dataloader.dataset.indices=96', 'train_cfg.max_epochs=3',
        'train_cfg.val_interval=3', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'val_dataloader.num_workers=0',
        'val_dataloader.persistent_workers=False',
        'train_dataloader.batch_size=32'
    ]
    # The teacher reloads from its own checkpoint: none is refused.
    with pytest.raises(DistillerConfigError, match='Teacher .teacher. has '
                       'no checkpoint.*model.teacher.checkpoint=<file>'):
        train_tool.main(argv)
    assert not osp.exists(tmp_path / 'epoch_3.pth')
    train_tool.main(argv + ['model.teacher.random_init=True'])
    assert osp.exists(tmp_path / 'epoch_3.pth')
    assert not osp.exists(tmp_path / 'epoch_1.pth')  # resumed at epoch 2


def test_exported_student_matches_distiller_accuracy(trained, repo_root,
                                                     digits_root, tmp_path):
    extract = _tool(repo_root, 'model_converters/extract_student')
    student_ckpt = str(tmp_path / 'student.pth')
    n = extract.extract_student(
        osp.join(trained['work_dir'], 'epoch_3.pth'), student_ckpt)
    assert n == len(trained['runner'].model.student.state_dict())
    state = torch.load(student_ckpt, weights_only=True)['state_dict']
    assert all(not k.startswith(('student.', 'connectors.')) for k in state)
    # The weights validation scored (EMA's, which the checkpoint's
    # state_dict holds), bit for bit.
    runner = trained['runner']
    ema_hook = next(h for h in runner.hooks if type(h).__name__ == 'EMAHook')
    validated = ema_hook.ema_model.module.student.state_dict()
    assert set(state) == set(validated)
    for key, value in validated.items():
        assert torch.equal(state[key], value), key
    test_tool = _tool(repo_root, 'test')
    out = str(tmp_path / 'metrics.json')
    metrics = test_tool.main([
        osp.join(repo_root, STUDENT_CFG), student_ckpt, '--work-dir',
        str(tmp_path), '--out', out, '--cfg-options',
        f'test_dataloader.dataset.data_root={digits_root}',
        'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False'
    ])
    expected = trained['metrics']['accuracy/top1']
    assert metrics['accuracy/top1'] == pytest.approx(expected, abs=1e-6)
    with open(out) as f:
        assert json.load(f)['accuracy/top1'] == pytest.approx(expected)


def test_ema_export_is_what_ema_validation_scored(trained, repo_root,
                                                  digits_root, tmp_path,
                                                  assert_same_predictions):
    """mmengine's EMAHook saves the EMA weights under state_dict and the raw
    ones under ema_state_dict: --ema must export the former."""
    runner = trained['runner']
    ema_hook = next(h for h in runner.hooks if type(h).__name__ == 'EMAHook')
    ema_weights = ema_hook.ema_model.module.student.state_dict()
    raw_weights = runner.model.student.state_dict()  # swapped back after val
    extract = _tool(repo_root, 'model_converters/extract_student')
    src = osp.join(trained['work_dir'], 'epoch_3.pth')
    exported = {}
    for which in ('ema', 'raw'):
        dst = str(tmp_path / f'student_{which}.pth')
        extract.main([src, dst, f'--{which}'])
        exported[which] = torch.load(dst, weights_only=True)
    assert exported['ema']['meta']['weights'] == 'ema'
    assert exported['raw']['meta']['weights'] == 'raw'
    for which, weights in (('ema', ema_weights), ('raw', raw_weights)):
        state = exported[which]['state_dict']
        assert set(state) == set(weights)
        for key, value in weights.items():
            assert torch.equal(state[key], value), (which, key)
    assert any(not torch.equal(exported['ema']['state_dict'][k], v)
               for k, v in raw_weights.items())
    preds = str(tmp_path / 'preds.pkl')
    metrics = _tool(repo_root, 'test').main([
        osp.join(repo_root, STUDENT_CFG),
        str(tmp_path / 'student_ema.pth'), '--work-dir',
        str(tmp_path), '--out', preds, '--cfg-options',
        f'test_dataloader.dataset.data_root={digits_root}',
        'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False'
    ])
    assert metrics['accuracy/top1'] == pytest.approx(
        trained['metrics']['accuracy/top1'], abs=1e-6)
    assert_same_predictions(trained['val_preds'], preds)


def test_ema_export_of_a_run_without_ema_is_refused(tmp_path):
    extract = _tool(
        osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))),
        'model_converters/extract_student')
    src = str(tmp_path / 'no_ema.pth')
    torch.save({'meta': {}, 'state_dict': {'student.w': torch.zeros(1)}},
               src)
    with pytest.raises(KeyError, match='has no ema_state_dict'):
        extract.extract_student(src, str(tmp_path / 'out.pth'), ema=True)
    # --raw of a run without EMA: its only weights.
    assert extract.extract_student(src, str(tmp_path / 'out.pth'),
                                   raw=True) == 1


def test_load_from_exported_student_starts_from_it(trained, repo_root,
                                                   small_digits_cfg,
                                                   tmp_path):
    extract = _tool(repo_root, 'model_converters/extract_student')
    student_ckpt = str(tmp_path / 'student.pth')
    extract.extract_student(
        osp.join(trained['work_dir'], 'epoch_3.pth'), student_ckpt)
    cfg = _kd_cfg(repo_root, small_digits_cfg, str(tmp_path / 'run'))
    cfg.load_from = student_ckpt
    runner = Runner.from_cfg(cfg)
    runner.load_or_resume()
    exported = torch.load(student_ckpt, weights_only=True)['state_dict']
    loaded = runner.model.student.state_dict()
    assert set(loaded) == set(exported)
    for key, value in exported.items():
        assert torch.equal(loaded[key], value), key


def test_load_from_unrelated_checkpoint_is_refused(repo_root,
                                                   small_digits_cfg,
                                                   tmp_path):
    unrelated = str(tmp_path / 'unrelated.pth')
    torch.save({'state_dict': {'encoder.w': torch.zeros(1)}}, unrelated)
    cfg = _kd_cfg(repo_root, small_digits_cfg, str(tmp_path / 'run'))
    cfg.load_from = unrelated
    runner = Runner.from_cfg(cfg)
    with pytest.raises(CheckpointError, match='matches neither '
                       r"ClassificationDistiller .*\['encoder.w'\]"):
        runner.load_or_resume()


def test_stop_distill_hook_stops_teacher(repo_root, small_digits_cfg,
                                         tmp_path):
    cfg = _kd_cfg(
        repo_root, small_digits_cfg, str(tmp_path),
        custom_hooks=[dict(type='StopDistillHook', stop_epoch=2)])
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    runner = Runner.from_cfg(cfg)
    epochs = []
    runner.model.teachers['teacher'].register_forward_hook(
        lambda *a: epochs.append(runner.epoch))
    runner.train()
    assert set(epochs) == {0, 1}  # not run in epoch 2
    assert runner.model.distill_enabled is False
    assert runner.model.current_stage().student_loss_weight == 1.0


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == 'win32', reason='bash launcher')
def test_dist_train_two_processes_gloo(repo_root, digits_root, tmp_path):
    """DDP with find_unused_parameters=False through tools/dist_train.sh;
    the ranks end with the same weights (tests/tools/buffer_probe_hook.py
    saves each rank's)."""
    config = tmp_path / 'kd_probed.py'
    config.write_text(
        f'_base_ = [{osp.join(repo_root, KD_CFG)!r}]\n'
        "custom_imports = dict(imports=['buffer_probe_hook'], "
        'allow_failed_imports=False)\n'
        'default_hooks = dict(probe=dict(type="BufferProbeHook", '
        f'out_dir={str(tmp_path)!r}))\n')
    env = dict(os.environ, PORT='29631', OMP_NUM_THREADS='1')
    env['PATH'] = osp.dirname(sys.executable) + os.pathsep + env['PATH']
    env['PYTHONPATH'] = os.pathsep.join(
        [osp.dirname(osp.abspath(__file__)), env.get('PYTHONPATH', '')])
    proc = subprocess.run(
        [
            'bash', 'tools/dist_train.sh', str(config), '2', '--work-dir',
            str(tmp_path), '--no-validate', '--cfg-options',
            f'train_dataloader.dataset.data_root={digits_root}',
            'train_dataloader.dataset.indices=32',
            'train_dataloader.batch_size=8', 'train_cfg.max_epochs=3',
            'train_dataloader.num_workers=0',
            'train_dataloader.persistent_workers=False',
            'find_unused_parameters=False', 'model.teacher.random_init=True'
        ],
        cwd=repo_root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert osp.exists(tmp_path / 'epoch_3.pth')
    weights = [
        torch.load(tmp_path / f'trained_rank{rank}.pth',
                   weights_only=True)['params'] for rank in (0, 1)
    ]
    checkpoint = torch.load(tmp_path / 'epoch_3.pth',
                            weights_only=False)['state_dict']
    assert weights[0] and set(weights[0]) == set(weights[1])
    for key, value in weights[0].items():
        assert torch.equal(value, weights[1][key]), key
        assert torch.equal(checkpoint[key], value), key
    log = proc.stdout + proc.stderr
    assert "'backend': 'gloo'" in log
    assert 'Distributed training: True' in log
    assert 'loss_kd' in log


def test_test_tool_refuses_a_checkpoint_of_another_model(trained, repo_root,
                                                         digits_root,
                                                         tmp_path):
    """mmengine's load_from only warns on a mismatch and the test then
    scores random weights; tools/test.py loads strictly."""
    student_ckpt = str(tmp_path / 'student.pth')
    _tool(repo_root, 'model_converters/extract_student').extract_student(
        osp.join(trained['work_dir'], 'epoch_3.pth'), student_ckpt)
    test_tool = _tool(repo_root, 'test')
    with pytest.raises(RuntimeError, match=r'(?s)does not fit the model of .*'
                       r'resnet18-c4.*missing keys: backbone.conv1.*'
                       r'and \d+ more; unexpected keys: .*cls_token'):
        test_tool.main([
            osp.join(repo_root, 'configs/digits/resnet18-c4_1xb64_digits.py'),
            student_ckpt, '--work-dir', str(tmp_path), '--cfg-options',
            f'test_dataloader.dataset.data_root={digits_root}',
            'test_dataloader.num_workers=0',
            'test_dataloader.persistent_workers=False'
        ])


def test_test_tool_loads_after_hooks_are_ready(trained, repo_root,
                                                digits_root, tmp_path,
                                                assert_same_predictions):
    """EMAHook handles a loaded checkpoint only after before_run: a config
    with it tests the distiller checkpoint it wrote, scoring what its EMA
    validation scored."""
    config = tmp_path / 'kd_ema.py'
    config.write_text(
        f"_base_ = [{osp.join(repo_root, KD_CFG)!r}]\n"
        "custom_hooks = [dict(type='EMAHook', momentum=0.1)]\n")
    preds = str(tmp_path / 'preds.pkl')
    metrics = _tool(repo_root, 'test').main([
        str(config), osp.join(trained['work_dir'], 'epoch_3.pth'),
        '--work-dir', str(tmp_path), '--out', preds, '--cfg-options',
        'model.teacher.random_init=True',
        f'test_dataloader.dataset.data_root={digits_root}',
        'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False'
    ])
    assert metrics['accuracy/top1'] == pytest.approx(
        trained['metrics']['accuracy/top1'], abs=1e-6)
    assert_same_predictions(trained['val_preds'], preds)
