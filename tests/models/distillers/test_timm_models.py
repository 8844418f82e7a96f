"""timm models on either side, one line each: a ``TimmClassifier`` student
(logits and supervised loss its own, taps under ``model.``, Mixup/CutMix,
strict checkpoints, export to the plain timm config) and a
``TimmClassifier`` teacher (checkpoint loaded strictly, logits used)."""
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.runner import Runner
from mmpretrain.structures import DataSample

import cls_kd
from cls_kd.models.distillers import DistillerConfigError
from cls_kd.registry import MODELS
from cls_kd.utils import CheckpointError, resolve_teacher_paths

cls_kd.register_all_modules(init_default_scope=False)

TIMM_STUDENT = 'configs/kd/kd_resnet18-c16_timm-vit-4x64-p8_1xb64_digits.py'
TIMM_TEACHER = 'configs/kd/kd_timm-resnet18-c16_vit-t4-p8_1xb64_digits.py'
PLAIN_TIMM_STUDENT = 'configs/digits/timm-vit-4x64-p8_1xb64_digits.py'
PLAIN_TIMM_TEACHER = 'configs/digits/timm-resnet18-c16_1xb64_digits.py'


def _cfg(repo_root, config, **model):
    cfg = resolve_teacher_paths(Config.fromfile(osp.join(repo_root, config)))
    if cfg.model.get('teacher') is not None:
        cfg.model.teacher.random_init = True
    for key, value in model.items():  # replaced, not merged
        cfg.model[key] = value
    cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    return cfg


def _batch(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        inputs=[
            torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=g)
            for _ in range(n)
        ],
        data_samples=[DataSample().set_gt_label(i % 10) for i in range(n)])


def test_timm_student_gives_its_logits_and_loss(repo_root):
    distiller = MODELS.build(_cfg(repo_root, TIMM_STUDENT).model)
    assert type(distiller.student).__name__ == 'TimmClassifier'
    assert distiller.student_kind == 'model'
    data = distiller.data_preprocessor(_batch(), True)
    torch.manual_seed(0)
    losses = distiller(**data, mode='loss')
    assert set(losses) == {'loss_cls', 'cls_unweighted', 'loss_kd'}
    distiller.eval()  # no dropout: the same logits again
    torch.manual_seed(0)
    losses = distiller(**data, mode='loss')
    logits = distiller.student.model(data['inputs'])
    labels = torch.tensor([i % 10 for i in range(4)])
    expected = F.cross_entropy(logits, labels)
    assert float(losses['cls_unweighted']) == pytest.approx(
        float(expected), rel=1e-5)
    assert float(losses['loss_cls']) == pytest.approx(
        0.5 * float(expected), rel=1e-5)
    # Prediction is the timm model's.
    preds = distiller(data['inputs'], data['data_samples'], mode='predict')
    torch.testing.assert_close(
        torch.stack([p.pred_score for p in preds]),
        logits.detach().softmax(1))


def test_timm_student_with_mixup_cutmix_gets_soft_labels(repo_root):
    cfg = _cfg(repo_root, TIMM_STUDENT)
    cfg.model.data_preprocessor = dict(
        cfg.data_preprocessor,
        batch_augments=dict(augments=[dict(type='Mixup', alpha=0.8)]))
    distiller = MODELS.build(cfg.model)
    distiller.eval()
    torch.manual_seed(3)
    data = distiller.data_preprocessor(_batch(), True)
    scores = torch.stack([s.gt_score for s in data['data_samples']])
    assert ((scores > 0) & (scores < 1)).any()  # mixed labels
    losses = distiller(**data, mode='loss')
    logits = distiller.student.model(data['inputs'])
    expected = -(scores * logits.log_softmax(1)).sum(1).mean()
    assert float(losses['cls_unweighted']) == pytest.approx(
        float(expected), rel=1e-5)


def test_tap_on_a_timm_student(repo_root):
    """Taps read a timm model's modules under ``model.``; a wrong path
    lists the candidates."""
    taps = dict(s_cls=dict(path='model.blocks.3', selector='cls_token'))
    losses = dict(
        loss_kd=dict(type='KDLoss', temperature=4.0, loss_weight=0.5,
                     inputs=dict(logits_s='logits_s', logits_t='logits_t')),
        loss_feat=dict(type='FeatureMSELoss', loss_weight=1e-3,
                       inputs=dict(preds='proj(s_cls)', targets='logits_t')))
    connectors = dict(proj=dict(type='LinearConnector', in_channels=64,
                                out_channels=10))
    distiller = MODELS.build(
        _cfg(repo_root, TIMM_STUDENT, taps=taps, losses=losses,
             connectors=connectors).model)
    data = distiller.data_preprocessor(_batch(), True)
    losses = distiller(**data, mode='loss')
    assert torch.isfinite(losses['loss_feat']) and losses['loss_feat'] > 0
    losses['loss_feat'].backward()
    block = distiller.student.model.blocks[3].mlp.fc2.weight
    assert block.grad is not None and block.grad.abs().sum() > 0
    taps['s_cls']['path'] = 'model.block.3'
    with pytest.raises(DistillerConfigError, match=r'model\.blocks\.3'):
        MODELS.build(
            _cfg(repo_root, TIMM_STUDENT, taps=taps, losses=losses,
                 connectors=connectors).model)


def test_a_bare_timm_backbone_student_is_refused_with_the_working_form(
        repo_root):
    student = dict(type='TIMMBackbone', model_name='resnet18',
                   pretrained=False)
    with pytest.raises(DistillerConfigError) as info:
        MODELS.build(_cfg(repo_root, TIMM_STUDENT, student=student).model)
    message = str(info.value)
    assert "dict(type='TimmClassifier', model_name='resnet18'" in message
    assert 'LabelFreeDistiller' in message


@pytest.fixture(scope='module')
def timm_run(repo_root, small_digits_cfg, tmp_path_factory):
    work_dir = str(tmp_path_factory.mktemp('timm_student'))
    cfg = Config.fromfile(osp.join(repo_root, TIMM_STUDENT))
    cfg.model.teacher.random_init = True
    small_digits_cfg(cfg, work_dir, train_images=32, batch_size=16)
    cfg.val_dataloader.dataset.indices = 32
    val_preds = osp.join(work_dir, 'val.pkl')
    cfg.val_evaluator = list(cfg.val_evaluator) + [
        dict(type='DumpResults', out_file_path=val_preds)]
    runner = Runner.from_cfg(cfg)
    runner.train()
    return dict(work_dir=work_dir, metrics=runner.val_loop.run(),
                state=runner.model.state_dict(), val_preds=val_preds)


def test_timm_student_checkpoint_loads_back_strictly(timm_run, repo_root):
    ckpt = torch.load(osp.join(timm_run['work_dir'], 'epoch_3.pth'),
                      map_location='cpu', weights_only=False)
    assert 'student.model.cls_token' in ckpt['state_dict']
    distiller = MODELS.build(_cfg(repo_root, TIMM_STUDENT).model)
    distiller.load_state_dict(ckpt['state_dict'], strict=True)
    for key, value in distiller.state_dict().items():
        assert torch.equal(value, timm_run['state'][key]), key


def test_exported_timm_student_tests_as_the_plain_timm_config(
        timm_run, tool_loader, repo_root, digits_root, tmp_path,
        assert_same_predictions):
    out = str(tmp_path / 'student.pth')
    tool_loader('tools/model_converters/extract_student.py').extract_student(
        osp.join(timm_run['work_dir'], 'epoch_3.pth'), out)
    state = torch.load(out, map_location='cpu')['state_dict']
    assert 'cls_token' in state and 'head.weight' in state
    assert not any(k.startswith(('model.', 'backbone.')) for k in state)
    metrics = tool_loader('tools/test.py').main([
        osp.join(repo_root, PLAIN_TIMM_STUDENT), out, '--work-dir',
        str(tmp_path), '--out', str(tmp_path / 'preds.pkl'), '--cfg-options',
        f'test_dataloader.dataset.data_root={digits_root}',
        'test_dataloader.dataset.indices=32', 'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False'
    ])
    assert metrics['accuracy/top1'] == pytest.approx(
        timm_run['metrics']['accuracy/top1'], abs=1e-9)
    assert_same_predictions(timm_run['val_preds'], str(tmp_path / 'preds.pkl'))


def test_timm_teacher_loads_its_checkpoint_and_gives_the_logits(
        repo_root, tmp_path):
    plain = Config.fromfile(osp.join(repo_root, PLAIN_TIMM_TEACHER))
    torch.manual_seed(5)
    teacher = MODELS.build(plain.model)
    path = str(tmp_path / 'teacher.pth')
    # A TimmClassifier's own checkpoint: keys without model.
    torch.save({'state_dict': teacher.state_dict()}, path)
    assert 'fc.weight' in torch.load(path)['state_dict']
    cfg = _cfg(repo_root, TIMM_TEACHER)
    cfg.model.teacher.update(random_init=False, checkpoint=path)
    distiller = MODELS.build(cfg.model)
    loaded = distiller.teachers['teacher']
    assert type(loaded).__name__ == 'TimmClassifier'
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    data = distiller.data_preprocessor(_batch(), True)
    teacher.eval()
    with torch.no_grad():
        expected = teacher(data['inputs'], mode='tensor')
    values = distiller._run_teacher('teacher', data['inputs'], True)
    torch.testing.assert_close(values['logits_teacher'], expected)
    # Another model's checkpoint is refused, naming the keys.
    other = MODELS.build(
        Config.fromfile(osp.join(repo_root, PLAIN_TIMM_STUDENT)).model)
    wrong = str(tmp_path / 'wrong.pth')
    torch.save({'state_dict': other.state_dict()}, wrong)
    cfg.model.teacher.checkpoint = wrong
    with pytest.raises((CheckpointError, DistillerConfigError),
                       match='wrong.pth'):
        MODELS.build(cfg.model)
