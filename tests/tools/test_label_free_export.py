"""An exported label-free (AttnDistill) student is evaluated as a plain
backbone: the exporter writes it under ``backbone.``, a shipped k-NN config
tests it and scores what the distiller's k-NN validation scored, and a
checkpoint whose keys lack the prefix is refused with the fix."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

import cls_kd

cls_kd.register_all_modules(init_default_scope=False)

DISTILL = ('configs/attndistill/'
           'attndistill_vit-4x64-p8_vit-4x32-p8_1xb64_digits.py')
KNN = 'configs/attndistill/knn_vit-4x32-p8_digits.py'
# The same subsets the distiller's validation uses below.
BANK, QUERIES = 64, 32


@pytest.fixture(scope='module')
def distilled(repo_root, small_digits_cfg, tmp_path_factory):
    work_dir = str(tmp_path_factory.mktemp('attndistill'))
    cfg = Config.fromfile(osp.join(repo_root, DISTILL))
    cfg.model.teacher.checkpoint = None
    cfg.model.teacher.random_init = True
    small_digits_cfg(cfg, work_dir, train_images=32, batch_size=16, epochs=3)
    cfg.val_dataloader.dataset.indices = QUERIES
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.val_loop.run()
    return dict(work_dir=work_dir, metrics=metrics,
                student=runner.model.student.state_dict())


def _test(tool_loader, repo_root, digits_root, ckpt, tmp_path, *extra):
    return tool_loader('tools/test.py').main([
        osp.join(repo_root, KNN), ckpt, '--work-dir',
        str(tmp_path), *extra, '--cfg-options',
        f'test_dataloader.dataset.data_root={digits_root}',
        f'test_dataloader.dataset.indices={QUERIES}',
        'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False',
        f'test_cfg.bank_dataloader.dataset.data_root={digits_root}',
        f'test_cfg.bank_dataloader.dataset.indices={BANK}',
        'test_cfg.bank_dataloader.num_workers=0',
        'test_cfg.bank_dataloader.persistent_workers=False'
    ])


def test_export_writes_the_backbone_under_backbone(distilled, tool_loader,
                                                   tmp_path, capsys):
    extract = tool_loader('tools/model_converters/extract_student.py')
    out = str(tmp_path / 'student.pth')
    extract.main([osp.join(distilled['work_dir'], 'epoch_3.pth'), out])
    assert 'bare backbone' in capsys.readouterr().out
    state = torch.load(out, map_location='cpu')['state_dict']
    assert state and all(k.startswith('backbone.') for k in state)
    assert 'backbone.cls_token' in state
    assert not any(k.startswith(('backbone.backbone.', 'connectors.',
                                 'teacher')) for k in state)
    # --bare keeps the keys as trained.
    extract.main([
        osp.join(distilled['work_dir'], 'epoch_3.pth'),
        str(tmp_path / 'bare.pth'), '--bare'
    ])
    bare = torch.load(str(tmp_path / 'bare.pth'), map_location='cpu')
    assert set(bare['state_dict']) == {
        k[len('backbone.'):]
        for k in state
    }


def test_knn_config_scores_what_validation_scored(distilled, tool_loader,
                                                  repo_root, digits_root,
                                                  tmp_path):
    out = str(tmp_path / 'student.pth')
    tool_loader('tools/model_converters/extract_student.py').extract_student(
        osp.join(distilled['work_dir'], 'epoch_3.pth'), out)
    # The trained student's weights, bit for bit (a k-NN top-1 of 32
    # queries alone could match by chance).
    exported = torch.load(out, map_location='cpu')['state_dict']
    trained = distilled['student']
    assert set(exported) == {f'backbone.{k}' for k in trained}
    for key, value in trained.items():
        assert torch.equal(exported[f'backbone.{key}'], value), key
    metrics = _test(tool_loader, repo_root, digits_root, out, tmp_path)
    assert metrics['knn/top1'] == pytest.approx(
        distilled['metrics']['knn/top1'], abs=1e-6)


def test_a_bare_checkpoint_is_refused_with_the_prefix_fix(
        distilled, tool_loader, repo_root, digits_root, tmp_path):
    out = str(tmp_path / 'bare.pth')
    tool_loader('tools/model_converters/extract_student.py').extract_student(
        osp.join(distilled['work_dir'], 'epoch_3.pth'), out, bare=True)
    with pytest.raises(RuntimeError) as info:
        _test(tool_loader, repo_root, digits_root, out, tmp_path)
    message = str(info.value)
    assert "without the prefix 'backbone.'" in message
    assert '--checkpoint-prefix backbone.' in message
    # ... and the option named there loads it, scoring the same.
    metrics = _test(tool_loader, repo_root, digits_root, out,
                    tmp_path / 'prefixed', '--checkpoint-prefix', 'backbone.')
    assert metrics['knn/top1'] == pytest.approx(
        distilled['metrics']['knn/top1'], abs=1e-6)


def test_linear_probe_init_reads_the_exported_backbone(distilled, tool_loader,
                                                       tmp_path):
    """The linear-probe configs load the export through the backbone's
    ``init_cfg`` with ``prefix='backbone.'``."""
    from cls_kd.registry import MODELS
    out = str(tmp_path / 'student.pth')
    tool_loader('tools/model_converters/extract_student.py').extract_student(
        osp.join(distilled['work_dir'], 'epoch_3.pth'), out)
    exported = torch.load(out, map_location='cpu')['state_dict']
    backbone = MODELS.build(
        dict(type='DINOVisionTransformer',
             arch=dict(embed_dims=32, num_layers=4, num_heads=4,
                       feedforward_channels=64),
             img_size=32, patch_size=8,
             init_cfg=dict(type='Pretrained', checkpoint=out,
                           prefix='backbone.')))
    backbone.init_weights()
    loaded = backbone.state_dict()
    assert set(loaded) == {k[len('backbone.'):] for k in exported}
    for key, value in loaded.items():
        assert torch.equal(value, exported[f'backbone.{key}']), key
