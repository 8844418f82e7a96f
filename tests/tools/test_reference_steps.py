"""The hand-written reference step of ``benchmark.py --reference`` does the
work of cls_kd's step for ScaleKD, AttnDistill and DearKD: on the same
inputs and weights, the same loss terms and the same gradients (the logit
family and ViTKD: tests/tools/test_benchmark.py)."""
import copy

import pytest
import torch
import torch.nn.functional as F

import cls_kd

cls_kd.register_all_modules()  # the optimizer wrapper constructor's scope

SCALEKD_CNN = 'configs/scalekd/scalekd_vit-4x64-p8_resnet18-c4_1xb64_digits.py'
SCALEKD_MIXER = ('configs/scalekd/scalekd_vit-4x64-p8_mixer-4x32-p8_1xb64_'
                 'digits.py')
ATTNDISTILL = ('configs/attndistill/attndistill_vit-4x64-p8_vit-4x32-p8_'
               '1xb64_digits.py')
ATTNDISTILL_ALIGN = ('configs/attndistill/attndistill-align_vit-4x64-p8_'
                     'vit-4x32-p8_1xb64_digits.py')
DEARKD = 'configs/dearkd/dearkd_resnet18-c16_vit-t4-p8_1xb64_digits.py'
DEARKD_P4 = 'configs/dearkd/dearkd_resnet18-c16_vit-4x64-p4_1xb64_digits.py'
LOSS_TOL = dict(rel=1e-5, abs=1e-7)
GRAD_TOL = dict(rtol=1e-4, atol=1e-6)


@pytest.fixture(scope='module')
def tools(tool_loader):
    return (tool_loader('tools/analysis/benchmark.py'),
            tool_loader('tools/analysis/reference_step.py'))


@pytest.fixture(autouse=True)
def in_repo(monkeypatch, repo_root):
    # The teachers' config paths in the digits configs are relative.
    monkeypatch.chdir(repo_root)


def _tiny_teacher(backbone: dict, channels: int, pool: bool) -> dict:
    return dict(config=dict(
        type='ImageClassifier', backbone=backbone,
        neck=dict(type='GlobalAveragePooling') if pool else None,
        head=dict(type='LinearClsHead', num_classes=10, in_channels=channels,
                  loss=dict(type='CrossEntropyLoss'))))


def _swin_teacher(cfg):
    """ScaleKD's CNN digits config with a tiny Swin teacher (grids 16, 8, 4,
    2; widths 8 to 64): TPP = the merging before stage 3, its blocks and
    norm3, on the stage-2 grid."""
    cfg.model.teacher = _tiny_teacher(
        dict(type='SwinTransformer', img_size=32, patch_size=2,
             window_size=2, drop_path_rate=0.0,
             arch=dict(embed_dims=8, depths=[2, 2, 2, 2],
                       num_heads=[1, 1, 2, 2])), 64, pool=True)
    cfg.model.taps.t_final = dict(model='teacher', path='backbone.norm3')
    cfg.model.connectors.tpp.runner = dict(type='SwinStageRunner', stage=-1)
    for name in ('cap3', 'cap3_alt'):
        cfg.model.connectors[name].update(out_channels=32, query_size=4)
    for name in ('cap4', 'cap4_alt'):
        cfg.model.connectors[name].update(out_channels=64, query_size=2)


def _beit_teacher(shared_bias: bool, add_prefix: bool):
    """ScaleKD's CNN digits config with a tiny BEiT teacher; TPP = its last
    2 blocks, with its class token (and the shared relative position bias)
    or on the patch tokens alone (EVA's case)."""

    def apply(cfg):
        cfg.model.teacher = _tiny_teacher(
            dict(type='BEiTViT', img_size=32, patch_size=8,
                 arch=dict(embed_dims=64, num_layers=4, num_heads=4,
                           feedforward_channels=128),
                 use_abs_pos_emb=True, use_rel_pos_bias=False,
                 use_shared_rel_pos_bias=shared_bias), 64, pool=False)
        cfg.model.taps.t_final = dict(
            model='teacher', path='backbone.layers.3',
            selector='patch_tokens')
        cfg.model.connectors.tpp.runner = dict(
            type='ViTBlocksRunner', start=-2, add_prefix=add_prefix)

    return apply


def _build(tools, config, edit=None, options=()):
    benchmark, _ = tools
    argv = [config]
    if options:
        argv += ['--cfg-options', *options]
    cfg = benchmark.load_config(benchmark.parse_args(argv))
    if edit is not None:
        edit(cfg)
    model, _ = benchmark.build_model(cfg)
    return model, cfg


def _reference(tools, model, cfg):
    benchmark, reference_step = tools
    cpu = torch.device('cpu')
    wrapper = benchmark.build_wrapper(model, cfg, None, cpu)
    return reference_step.ReferenceStep(model, cfg.model, cfg.optim_wrapper,
                                        wrapper, cpu)


def _inputs(tools, model):
    """A preprocessed batch of 4 and its samples; for a classifier, mixed
    scores (0.7 of one class, 0.3 of another, as Mixup gives them) whose
    arg-max are the labels."""
    benchmark, _ = tools
    data = model.data_preprocessor(benchmark.make_batch(4, (32, 32), 10))
    x, samples = data['inputs'], data['data_samples']
    if not hasattr(model, 'student_loss_weight'):
        return x, samples, None
    labels = torch.cat([s.gt_label for s in samples])
    scores = 0.7 * F.one_hot(labels, 10) + 0.3 * F.one_hot(
        labels.roll(1), 10)
    for sample, score in zip(samples, scores):
        sample.set_gt_score(score)
    return x, samples, scores


def _same_losses_and_gradients(tools, model, cfg, epoch=0):
    """Both sides' losses on one batch (eval mode: no dropout or
    drop-path), checked equal with their student and connector gradients;
    returns the reference and its losses."""
    model.eval()
    model.set_progress(epoch=epoch, iter=0)
    torch.manual_seed(0)
    with torch.no_grad():  # no teacher tensor left at a zero init
        for teacher in model.teachers.values():
            for p in teacher.parameters():
                p.add_(0.02 * torch.randn_like(p))
    ref = _reference(tools, model, cfg)
    x, samples, scores = _inputs(tools, model)
    torch.manual_seed(3)
    ours = {k: v for k, v in model.loss(x, samples).items() if 'loss' in k}
    torch.manual_seed(3)
    theirs = ref.forward_losses(x, scores)
    assert list(theirs) == list(ours)
    for name in ours:
        assert torch.isfinite(theirs[name]) and theirs[name] != 0, name
        assert theirs[name].item() == pytest.approx(ours[name].item(),
                                                    **LOSS_TOL), name
    sum(ours.values()).backward()
    sum(theirs.values()).backward()
    grads = {id(p): p.grad for p in model.parameters()}
    assert ref.pairs and all(p.requires_grad for p, _ in ref.pairs)
    for mine, copied in ref.pairs:
        # cls_kd's zero term for the connectors of terms that are off gives
        # them zeros where the reference leaves them without a gradient.
        want = grads[id(mine)]
        want = torch.zeros_like(mine) if want is None else want
        got = copied.grad
        got = torch.zeros_like(copied) if got is None else got
        assert torch.allclose(got, want, **GRAD_TOL)
    return ref, theirs


@pytest.mark.parametrize('config, edit', [
    (SCALEKD_CNN, None),
    (SCALEKD_MIXER, None),
    (SCALEKD_CNN, _swin_teacher),
    (SCALEKD_CNN, _beit_teacher(shared_bias=True, add_prefix=True)),
    (SCALEKD_CNN, _beit_teacher(shared_bias=False, add_prefix=False)),
], ids=['cnn', 'mixer', 'swin-teacher', 'beit-teacher', 'eva-like-teacher'])
def test_scalekd_same_losses_and_gradients(tools, config, edit):
    """Both views, both stages: the TPP path written out through the
    teacher's modules gives cls_kd's runner's losses and gradients."""
    model, cfg = _build(tools, config, edit)
    ref, losses = _same_losses_and_gradients(tools, model, cfg)
    assert set(losses) == {'loss_cls', 'loss_s3', 'loss_s3_alt', 'loss_s4',
                           'loss_s4_alt', 'loss_kd'}
    # The stage-3 projector is trained through the frozen teacher part.
    assert ref.connectors['cap3'].query.grad.abs().sum() > 0
    assert all(p.grad is None for p in ref.teacher.parameters())


@pytest.mark.parametrize('config, options', [
    (ATTNDISTILL, ()),
    (ATTNDISTILL_ALIGN, ()),
    # 8x8 student patches against the teacher's 4x4, 2 heads against 4:
    # the teacher's rows resized, both models' heads aggregated.
    (ATTNDISTILL, ('model.student.patch_size=4',
                   'model.student.arch.num_heads=2')),
], ids=['attndistill', 'align-only', 'resize-and-aggregate'])
def test_attndistill_same_losses_and_gradients(tools, config, options):
    """Label-free: no supervised loss; projector and attention rows."""
    model, cfg = _build(tools, config, options=options)
    ref, losses = _same_losses_and_gradients(tools, model, cfg)
    assert 'loss_cls' not in losses and 'loss_align' in losses
    assert not ref.classification and ref.teacher_head is False


@pytest.mark.parametrize('config', [DEARKD, DEARKD_P4])
def test_dearkd_stage1_same_losses_and_gradients(tools, config):
    """Stage 1: CE, the DeiT token term and the hidden-state term on the
    MHCA blocks' tokens."""
    model, cfg = _build(tools, config)
    ref, losses = _same_losses_and_gradients(tools, model, cfg)
    assert list(losses) == ['loss_cls', 'loss_deit', 'loss_hidden']
    assert ref.connectors['align0'].layers[0].weight.grad.abs().sum() > 0


def test_dearkd_stage2_runs_no_teacher(tools):
    """After the switch (epoch 32 of the digits config): the student's
    loss at weight 1, no term, and the teacher is not run."""
    model, cfg = _build(tools, DEARKD)
    ref, losses = _same_losses_and_gradients(tools, model, cfg, epoch=32)
    assert list(losses) == ['loss_cls'] and ref.student_loss_weight == 1.0
    calls = []
    ref.teacher.register_forward_pre_hook(lambda *args: calls.append(1))
    x, _, scores = _inputs(tools, model)
    ref.forward_losses(x, scores)
    ref.teacher_forward(x)
    assert ref.run_teacher is False and not calls


def test_scalekd_step_trains_the_projectors_not_the_teacher(tools):
    benchmark, _ = tools
    model, cfg = _build(tools, SCALEKD_CNN)
    model.train()
    ref = _reference(tools, model, cfg)
    caps = copy.deepcopy(ref.connectors.state_dict())
    teacher = copy.deepcopy(ref.teacher.state_dict())
    batch = benchmark.make_batch(4, (32, 32), 10)
    ref.step(torch.stack(batch['inputs']),
             torch.cat([s.gt_label for s in batch['data_samples']]))
    moved = {k for k, v in ref.connectors.state_dict().items()
             if not torch.equal(v, caps[k])}
    assert {'cap3.query', 'cap3_alt.query', 'cap4.q.weight',
            'cap4_alt.q.weight'} <= moved
    assert all(torch.equal(v, teacher[k])
               for k, v in ref.teacher.state_dict().items())
    assert not ref.features
