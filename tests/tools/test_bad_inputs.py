"""The bad-input battery: every mistake a user can make in a number, a
dataset or a tool's arguments stops before any work with a message that
names it, and nothing is trained or written (no checkpoint, no synthesis
folder). Regression cases that were already handled are here too. Mid-run
non-finite steps are skipped and counted instead (see
tests/engine/test_non_finite_guard.py, whose run is referenced below)."""
import glob
import os
import os.path as osp
import shutil

import pytest

from cls_kd.datasets.checks import DatasetCheckError
from cls_kd.models.distillers import DistillerConfigError
from cls_kd.utils import AmpUnavailableError, cpu_bf16_support

KD = 'configs/kd/kd_resnet18-c16_vit-t4-p8_1xb64_digits.py'
DKD = 'configs/dkd/dkd_resnet18-c16_vit-t4-p8_1xb64_digits.py'
ATTN = ('configs/attndistill/'
        'attndistill_vit-4x64-p8_vit-4x32-p8_1xb64_digits.py')
SYNTH = 'configs/dearkd/synthesis/deepinversion_resnet18-c16_digits.py'
DEARKD = 'configs/dearkd/dearkd_resnet18-c16_vit-t4-p8_1xb64_digits.py'
VITKD = 'configs/vitkd/vitkd_deit3-6x128-p8_vit-4x32-p8_1xb64_digits.py'

# (case, config, --cfg-options, exception, message fragment)
TRAIN_CASES = [
    ('kd loss_weight nan', KD, ['model.losses.loss_kd.loss_weight=nan'],
     DistillerConfigError,
     'model.losses.loss_kd (KDLoss): loss_weight must be a finite number '
     '>= 0, got nan.'),
    ('kd loss_weight -inf', KD, ['model.losses.loss_kd.loss_weight=-inf'],
     DistillerConfigError, 'loss_weight must be a finite number >= 0'),
    ('student_loss_weight inf', KD, ['model.student_loss_weight=inf'],
     DistillerConfigError,
     'model.student_loss_weight must be a finite number >= 0, got inf.'),
    ('temperature 0', KD, ['model.losses.loss_kd.temperature=0'],
     DistillerConfigError,
     '(KDLoss): temperature must be a finite number > 0, got 0'),
    ('dkd beta -1', DKD, ['model.losses.loss_dkd.beta=-1'],
     DistillerConfigError,
     'model.losses.loss_dkd (DKDLoss): beta must be a finite number >= 0, '
     'got -1'),
    ('stage end 0', DEARKD, ['model.stages.0.end=0'], DistillerConfigError,
     'model.stages[0].end must be an integer >= 1, got 0.'),
    ('tap typo', VITKD, ['model.taps.s_block0.path=backbone.layer.0'],
     DistillerConfigError, 'backbone.layers.0'),
    ('knn k > bank', ATTN, ['val_evaluator.0.k=100'], ValueError,
     'KNNAccuracy.k=100 neighbours, but the feature bank has 64 images; '
     'set k <= 64'),
    ('knn topk > classes', ATTN, ['val_evaluator.0.topk=(1,20)'], ValueError,
     'KNNAccuracy.topk=(1, 20) asks for the top 20 of 10 classes'),
    ('teacher checkpoint missing', KD,
     ['model.teacher.random_init=False',
      'model.teacher.checkpoint=nope/teacher.pth'], Exception,
     'nope/teacher.pth'),
]


def _options(digits_root, config):
    options = []
    for loader in ('train_dataloader', 'val_dataloader'):
        options += [
            f'{loader}.dataset.data_root={digits_root}',
            f'{loader}.dataset.indices=16', f'{loader}.num_workers=0',
            f'{loader}.persistent_workers=False'
        ]
    if config == ATTN:
        options += [
            f'val_cfg.bank_dataloader.dataset.data_root={digits_root}',
            'val_cfg.bank_dataloader.dataset.indices=64',
            'val_cfg.bank_dataloader.num_workers=0',
            'val_cfg.bank_dataloader.persistent_workers=False',
            'train_cfg.val_interval=1'
        ]
    return options + [
        'train_dataloader.batch_size=8', 'train_cfg.max_epochs=1',
        'model.teacher.random_init=True'
    ]


def _nothing_saved(work_dir):
    return not glob.glob(osp.join(str(work_dir), '**', '*.pth'),
                         recursive=True)


@pytest.mark.parametrize('case', TRAIN_CASES, ids=[c[0] for c in TRAIN_CASES])
def test_train_refuses(case, tool_loader, repo_root, digits_root, tmp_path):
    _, config, bad, error, fragment = case
    work_dir = tmp_path / 'work'
    with pytest.raises(error) as info:
        tool_loader('tools/train.py').main([
            osp.join(repo_root, config), '--work-dir',
            str(work_dir), '--cfg-options', *_options(digits_root, config),
            *bad
        ])
    assert fragment in str(info.value)
    assert _nothing_saved(work_dir)


def test_a_stage_beyond_max_epochs_is_fitted_and_printed(
        tool_loader, repo_root, digits_root, tmp_path, capsys):
    """Not an error: fitted and printed by the rule of the lr schedule."""
    tool_loader('tools/train.py').main([
        osp.join(repo_root, DEARKD), '--work-dir',
        str(tmp_path), '--cfg-options', *_options(digits_root, DEARKD)
    ])
    out = capsys.readouterr().out
    assert ('distillation stages fitted to max_epochs=1: model.stages[1] '
            '(begin=32) dropped') in out
    assert 'param_scheduler fitted to max_epochs=1' in out


def _class_folders(digits_root, tmp_path, extra):
    root = tmp_path / 'digits'
    shutil.copytree(digits_root, root)
    for split in ('train', 'val'):
        os.makedirs(root / split / extra)
        shutil.copy(glob.glob(str(root / split / '0' / '*'))[0],
                    root / split / extra / 'x.png')
    return root


def test_a_class_folder_beyond_num_classes(tool_loader, repo_root,
                                           digits_root, tmp_path):
    root = _class_folders(digits_root, tmp_path, '10')
    work_dir = tmp_path / 'work'
    with pytest.raises(DatasetCheckError) as info:
        tool_loader('tools/train.py').main([
            osp.join(repo_root, KD), '--work-dir',
            str(work_dir), '--cfg-options', *_options(root, KD)
        ])
    assert 'has 11 classes' in str(info.value)
    assert '(model.student.head.num_classes=10)' in str(info.value)
    assert not work_dir.exists()


def test_an_unreadable_image_names_its_path(tool_loader, repo_root,
                                            digits_root, tmp_path):
    """Kept from before: the failing file is named (mid-epoch: the data
    are only read then)."""
    root = tmp_path / 'digits'
    shutil.copytree(digits_root, root)
    torn = sorted(glob.glob(str(root / 'train' / '0' / '*')))[0]
    with open(torn, 'r+b') as f:
        f.truncate(40)
    with pytest.raises(Exception) as info:
        tool_loader('tools/train.py').main([
            osp.join(repo_root, KD), '--work-dir',
            str(tmp_path / 'work'), '--cfg-options', *_options(root, KD),
            'train_dataloader.dataset.indices=None',
            'train_dataloader.sampler.shuffle=False'
        ])
    assert torn in str(info.value)


TINY_SYNTH = [
    'teacher.random_init=True', 'teacher.checkpoint=None',
    'synthesis.num_images=10', 'synthesis.batch_size=10',
    'synthesis.phases.0.iters=1', 'synthesis.phases.1.iters=1',
    'synthesis.warmup_iters=0'
]
SYNTH_CASES = [
    ('iters 0', ['synthesis.phases.0.iters=0'],
     'synthesis.phases.0.iters must be an integer >= 1; got 0.'),
    ('size 0', ['synthesis.phases.1.size=0'],
     'synthesis.phases.1.size must be an integer >= 1; got 0.'),
    ('lr nan', ['synthesis.lr=nan'],
     'synthesis.lr must be a finite number > 0; got nan.'),
    ('bn weight -1', ['synthesis.weights.bn=-1'],
     'synthesis.weights.bn must be a finite number >= 0; got -1.'),
    ('batch 0', ['synthesis.batch_size=0'],
     'synthesis.batch_size must be an integer >= 1; got 0.'),
]


@pytest.mark.parametrize('case', SYNTH_CASES, ids=[c[0] for c in SYNTH_CASES])
def test_synthesize_refuses(case, tool_loader, repo_root, tmp_path):
    _, bad, fragment = case
    out = tmp_path / 'synth'
    with pytest.raises(SystemExit) as info:
        tool_loader('tools/synthesize.py').main([
            osp.join(repo_root, SYNTH), '--out',
            str(out), '--cfg-options', *TINY_SYNTH, *bad
        ])
    assert fragment in str(info.value.code)
    assert not out.exists()


def test_synthesize_refuses_an_out_that_is_a_file(tool_loader, repo_root,
                                                  tmp_path):
    out = tmp_path / 'synth'
    out.write_text('not a folder')
    with pytest.raises(SystemExit) as info:
        tool_loader('tools/synthesize.py').main([
            osp.join(repo_root, SYNTH), '--out',
            str(out), '--cfg-options', *TINY_SYNTH
        ])
    assert 'is a file, not a folder' in str(info.value.code)
    assert out.read_text() == 'not a folder'


def test_an_unfinished_synthesis_folder_is_refused(tool_loader, repo_root,
                                                   digits_root, tmp_path):
    out = tmp_path / 'synth'
    tool_loader('tools/synthesize.py').main([
        osp.join(repo_root, SYNTH), '--out',
        str(out), '--max-batches', '1', '--cfg-options', *TINY_SYNTH,
        'synthesis.num_images=20'
    ])
    datafree = ('configs/dearkd/'
                'dearkd_resnet18-c16_vit-t4-p8_1xb64_digits-datafree.py')
    work_dir = tmp_path / 'work'
    with pytest.raises(DatasetCheckError) as info:
        tool_loader('tools/train.py').main([
            osp.join(repo_root, datafree), '--work-dir',
            str(work_dir), '--cfg-options',
            f'train_dataloader.dataset.data_root={out}',
            f'val_dataloader.dataset.data_root={digits_root}'
        ])
    assert 'holds an unfinished synthesis run' in str(info.value)
    assert 'Finish it first with: python ' in str(info.value)
    assert not work_dir.exists()


def test_packaged_config_that_does_not_exist(tool_loader, capsys):
    with pytest.raises(SystemExit) as info:
        tool_loader('tools/train.py').main(['cls_kd::kd/nope.py'])
    assert info.value.code == 2
    assert "config 'cls_kd::kd/nope.py' not found" in capsys.readouterr().err


@pytest.mark.skipif(cpu_bf16_support()[0], reason='CPU has native bf16')
def test_amp_on_a_cpu_without_bf16(tool_loader, repo_root, digits_root,
                                   tmp_path):
    with pytest.raises(AmpUnavailableError):
        tool_loader('tools/train.py').main([
            osp.join(repo_root, KD), '--amp', '--work-dir',
            str(tmp_path / 'work'), '--cfg-options',
            *_options(digits_root, KD)
        ])
    assert _nothing_saved(tmp_path / 'work')


def test_one_inf_mid_run_is_skipped_and_counted(tool_loader, repo_root,
                                                digits_root, tmp_path,
                                                capsys):
    """One non-finite KD term (an overflowing teacher logit, a corrupt
    image) at the second step: that step is skipped on every rank and
    counted, the run ends with finite weights and says so. Many in a row
    stop the run non-zero: test_non_finite_guard.py's tools/train.py case.
    """
    import torch

    from cls_kd.models.losses import KDLoss
    from cls_kd.registry import MODELS

    calls = []

    @MODELS.register_module(force=True)
    class OnceInfKDLoss(KDLoss):

        def forward(self, logits_s, logits_t):
            calls.append(1)
            loss = super().forward(logits_s, logits_t)
            # Call 1 is the build-time dry run; 3 is the second step.
            return loss * float('inf') if len(calls) == 3 else loss

    config = tmp_path / 'once_inf.py'
    config.write_text(
        f"_base_ = [{osp.join(repo_root, KD)!r}]\n"
        "model = dict(losses=dict(loss_kd=dict(type='OnceInfKDLoss')))\n")
    runner = tool_loader('tools/train.py').main([
        str(config), '--work-dir',
        str(tmp_path / 'work'), '--no-validate', '--cfg-options',
        *_options(digits_root, KD), 'train_dataloader.batch_size=4'
    ])
    assert len(calls) == 1 + 4  # dry run; 16 images, batch 4, one epoch
    assert runner.optim_wrapper.nonfinite_skips == 1
    assert all(torch.isfinite(p).all() for p in runner.model.parameters())
    assert not _nothing_saved(tmp_path / 'work')
    assert 'non-finite steps skipped: 1 (max in a row 1' in (
        capsys.readouterr().out)
