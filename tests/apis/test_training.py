"""prepare_training: what tools/train.py does to a loaded config before the
Runner, and in which order (options before the checks, --cfg-options
before --amp, --no-validate before the data check, the data check before
resuming)."""
import os.path as osp

import pytest
import torch

from cls_kd.apis import (
    OptionError,
    apply_training_args,
    load_config,
    prepare_training,
)
from cls_kd.utils import amp

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
KD = osp.join(ROOT, 'configs/kd/kd_resnet18-c16_vit-t4-p8_1xb64_digits.py')


@pytest.fixture(scope='module')
def train_tool(tool_loader):
    return tool_loader('tools/train.py')


@pytest.fixture
def prepare(train_tool, digits_root, tmp_path):
    """``prepare(*train.py options, data=True)``: the prepared config of
    the KD digits config in ``tmp_path/work``; ``data=False`` leaves the
    config's (missing) data folders."""

    def run(*options, data=True, work_dir=True):
        data_options = ['--cfg-options'] + [
            f'{loader}.dataset.data_root={digits_root}'
            for loader in ('train_dataloader', 'val_dataloader')
        ] if data else []
        where = ['--work-dir', str(tmp_path / 'work')] if work_dir else []
        # Later --cfg-options are merged over the data folders.
        args = train_tool.parse_args([KD, *where, *data_options, *options])
        return prepare_training(load_config(args.config, args.cfg_options),
                                args)

    return run


@pytest.fixture
def avx2(monkeypatch):
    """A CPU without native bfloat16, and no CUDA."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(amp, 'cpu_bf16_support', lambda:
                        (False, 'CPU capability AVX2, no AVX512_BF16'))


def _checkpoint(path, truncate=False):
    torch.save({'meta': {'epoch': 1}, 'state_dict': {}}, str(path))
    if truncate:
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 2])


def test_amp_keeps_the_configs_non_finite_guard(prepare, avx2):
    wrapper = prepare('--amp-force').optim_wrapper
    assert (wrapper.type, wrapper.dtype, wrapper.skip_nonfinite) == \
        ('AutocastOptimWrapper', 'bfloat16', True)
    assert wrapper.optimizer == dict(type='AdamW', lr=0.002,
                                     weight_decay=0.05)


def test_cfg_options_come_before_amp(prepare, avx2):
    cfg = prepare('--amp-force', '--cfg-options',
                  'optim_wrapper.skip_nonfinite=False')
    assert (cfg.optim_wrapper.type, cfg.optim_wrapper.skip_nonfinite) == \
        ('AutocastOptimWrapper', False)


def test_amp_refused_is_an_option_error(avx2):
    args = type('Args', (), dict(amp=True))()
    with pytest.raises(OptionError, match=r'^--amp refused: bfloat16 is '
                       r'only emulated here \(CPU capability AVX2'):
        apply_training_args(load_config(KD), args)


def test_resume_auto_takes_the_newest_loadable_checkpoint(prepare, tmp_path):
    work = tmp_path / 'work'
    work.mkdir()
    _checkpoint(work / 'epoch_1.pth')
    _checkpoint(work / 'epoch_2.pth')
    _checkpoint(work / 'epoch_3.pth', truncate=True)
    (work / 'last_checkpoint').write_text('')  # killed while writing it
    with pytest.warns(UserWarning, match='Skipping checkpoint .*epoch_3'):
        cfg = prepare('--resume')
    assert (cfg.resume, cfg.load_from) == (True, str(work / 'epoch_2.pth'))


def test_resume_auto_without_a_checkpoint_fails(prepare, tmp_path):
    with pytest.raises(FileNotFoundError,
                       match=r'^Nothing to resume: no loadable epoch_\*\.pth '
                       r'or iter_\*\.pth checkpoint in the work dir '):
        prepare('--resume')


def test_resume_given_a_checkpoint_checks_it(prepare, tmp_path):
    with pytest.raises(FileNotFoundError,
                       match=r'^Cannot resume from .*nope\.pth: no such '
                       r'file\.'):
        prepare('--resume', str(tmp_path / 'nope.pth'))
    _checkpoint(tmp_path / 'mine.pth')
    cfg = prepare('--resume', str(tmp_path / 'mine.pth'))
    assert (cfg.resume, cfg.load_from) == (True, str(tmp_path / 'mine.pth'))


def test_missing_data_is_reported_before_resuming(prepare, tmp_path,
                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data/digits here
    with pytest.raises(FileNotFoundError,
                       match=r'^The data folder of train_dataloader does not '
                       r'exist: data/digits'):
        prepare('--resume', data=False)  # nothing to resume either


def test_no_validate_comes_before_the_data_check(prepare):
    missing = ('--cfg-options',
               'val_dataloader.dataset.data_root=/no/such/folder')
    with pytest.raises(FileNotFoundError, match='^The data folder of '
                       'val_dataloader does not exist: /no/such/folder'):
        prepare(*missing)
    cfg = prepare('--no-validate', *missing)
    assert (cfg.val_cfg, cfg.val_dataloader, cfg.val_evaluator) == (None, ) * 3


def test_auto_scale_lr_keeps_the_base_batch_size(prepare):
    assert prepare().auto_scale_lr == dict(base_batch_size=64)
    assert prepare('--auto-scale-lr').auto_scale_lr == dict(
        base_batch_size=64, enable=True)


def test_a_short_run_fits_the_schedule_after_the_options(prepare):
    cfg = prepare('--cfg-options', 'train_cfg.max_epochs=1')
    # The 2-epoch warm-up ends at 1; the cosine from epoch 2 never starts.
    assert [(s.type, s.begin, s.get('end')) for s in cfg.param_scheduler] \
        == [('LinearLR', 0, 1)]


def test_work_dir_compile_and_schedule_hooks(prepare, tmp_path,
                                             monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = prepare('--compile', work_dir=False)
    assert cfg.work_dir == osp.join('./work_dirs',
                                    'kd_resnet18-c16_vit-t4-p8_1xb64_digits')
    assert cfg.launcher == 'none' and 'compile' not in cfg
    assert [h['type'] for h in cfg.custom_hooks] == [
        'cls_kd.CompileHook', 'DistillScheduleHook'
    ]
    assert (cfg.resume, cfg.load_from) == (False, None)


def test_close_process_group_destroys_it():
    """tools/train.py, synthesize.py and dump_teacher_outputs.py end a run
    with it; without a group it does nothing."""
    import socket

    import torch.distributed as dist

    from cls_kd.apis import close_process_group
    close_process_group()  # no group: nothing to do
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}',
                            rank=0, world_size=1)
    assert dist.is_initialized()
    close_process_group()
    assert not dist.is_initialized()
