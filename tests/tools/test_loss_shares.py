"""tools/analysis/loss_shares.py: per-term gradients into the student."""
import math
from collections import OrderedDict

import pytest
import torch
import torch.nn as nn


@pytest.fixture(scope='module')
def tool(tool_loader):
    return tool_loader('tools/analysis/loss_shares.py')


def test_hand_computed_shares(tool):
    """Two terms on a 2x3 weight and a bias, worked out by hand."""
    w = nn.Parameter(torch.tensor([[1., 2., 0.], [0., -1., 3.]]))
    b = nn.Parameter(torch.tensor([0.5, -0.5]))
    x = torch.tensor([1., 0., 2.])
    # loss_a = sum(W x + b): dW = [x; x], db = [1, 1].
    # loss_b = 0.5 ||W||^2: dW = W, db = 0 (b unused).
    losses = dict(loss_a=(w @ x + b).sum(), loss_b=0.5 * (w**2).sum(),
                  acc=(w**3).sum())  # no "loss" in its name: not summed
    params = OrderedDict(w=w, b=b)
    grads = tool.term_gradients(losses, params)
    assert list(grads) == ['loss_a', 'loss_b']
    assert torch.equal(grads['loss_b'][1], torch.zeros(2))
    shares = tool.gradient_shares(grads, list(params), 'loss_a',
                                  groups=['w', 'b'])
    # |g_a|^2 = 2 |x|^2 + 2 = 12; |g_b|^2 = |W|^2 = 15; <g_a, g_b> =
    # sum_rows <x, W_i> = (1 + 0) + (0 + 6) = 7; |G|^2 = 12 + 15 + 14 = 41.
    a, b_ = shares['loss_a'], shares['loss_b']
    assert a['grad'] == pytest.approx(math.sqrt(12))
    assert b_['grad'] == pytest.approx(math.sqrt(15))
    assert a['proj_share'] == pytest.approx((12 + 7) / 41)
    assert b_['proj_share'] == pytest.approx((15 + 7) / 41)
    assert b_['cos_ref'] == pytest.approx(7 / math.sqrt(12 * 15))
    assert a['cos_ref'] == pytest.approx(1.0)
    assert a['norm_share'] == pytest.approx(
        math.sqrt(12) / (math.sqrt(12) + math.sqrt(15)))
    assert a['groups'] == pytest.approx(dict(w=math.sqrt(10), b=math.sqrt(2)))
    assert b_['groups'] == pytest.approx(dict(w=math.sqrt(15), b=0.0))


def test_scalekd_digits_terms_add_up(tool, repo_root, digits_root):
    """On the digits ScaleKD CNN config (random teacher): the per-term
    gradients add up to the gradient of mmengine's summed loss, the
    projection shares to 1, and the stage-3 terms reach neither layer4 nor
    the head (their taps read layer3)."""
    config = (f'{repo_root}/configs/scalekd/'
              f'scalekd_vit-4x64-p8_resnet18-c4_1xb64_digits.py')
    options = dict(
        model=dict(teacher=dict(checkpoint=None, random_init=True)),
        train_dataloader=dict(batch_size=8,
                              dataset=dict(data_root=digits_root)))
    cfg = tool.load_config(config)
    cfg.merge_from_dict(options)
    torch.manual_seed(0)
    from mmengine.runner import Runner

    from cls_kd.registry import MODELS
    model = MODELS.build(cfg.model)
    model.train()
    loader_cfg = dict(cfg.train_dataloader, num_workers=0,
                      persistent_workers=False)
    data = next(iter(Runner.build_dataloader(loader_cfg, seed=0)))
    data = model.data_preprocessor(data, True)
    params = OrderedDict((n, p) for n, p in model.student.named_parameters()
                         if p.requires_grad)
    torch.manual_seed(1)
    losses = model(**data, mode='loss')
    grads = tool.term_gradients(losses, params)
    assert set(grads) == {'loss_cls', 'loss_kd', 'loss_s3', 'loss_s3_alt',
                          'loss_s4', 'loss_s4_alt'}
    total, _ = model.parse_losses(losses)
    total.backward()
    for i, (name, p) in enumerate(params.items()):
        summed = sum(g[i] for g in grads.values())
        # float32 sums in another order: equal up to rounding.
        error = (summed - p.grad).norm() / p.grad.norm()
        assert error < 1e-4, (name, float(error))
    shares = tool.gradient_shares(grads, list(params), 'loss_cls',
                                  tool.default_groups(model.student))
    assert sum(s['proj_share'] for s in shares.values()) == pytest.approx(1)
    assert 'backbone.layer4' in shares['loss_s3']['groups']
    for term in ('loss_s3', 'loss_s3_alt'):
        assert shares[term]['groups']['backbone.layer4'] == 0
        assert shares[term]['groups']['head.fc'] == 0
        assert shares[term]['groups']['backbone.layer3'] > 0
    assert shares['loss_s4']['groups']['backbone.layer4'] > 0
    assert shares['loss_s4']['groups']['head.fc'] == 0
    assert shares['loss_kd']['groups']['head.fc'] > 0


def test_cli_on_initial_weights(tool, repo_root, digits_root, tmp_path,
                                capsys):
    config = (f'{repo_root}/configs/scalekd/'
              f'kd_vit-4x64-p8_resnet18-c4_1xb64_digits.py')
    out = tmp_path / 'shares.json'
    results = tool.main([
        config, '--batches', '2', '--out', str(out), '--cfg-options',
        'model.teacher.random_init=True',
        f'train_dataloader.dataset.data_root={digits_root}',
        'train_dataloader.batch_size=8'])
    shares = results['init']
    assert set(shares) == {'loss_cls', 'loss_kd'}
    # 0.5 CE with the labels vs 0.5 CE with a near-uniform random
    # teacher's soft labels: both about 0.5 ln 10 at initialisation.
    for term in shares:
        assert shares[term]['value'] == pytest.approx(
            0.5 * math.log(10), rel=0.25)
    assert shares['loss_cls']['cos_ref'] == pytest.approx(1.0)
    assert sum(s['proj_share'] for s in shares.values()) == pytest.approx(1)
    assert out.exists()
    assert 'loss_kd | ' in capsys.readouterr().out


@pytest.mark.parametrize('experiment', ['scalekd-sweep', 'scalekd-width'])
def test_sweep_runs_build_what_they_say(tool, tool_loader, repo_root,
                                        experiment):
    """The digits ScaleKD sweep's options build (projector inputs follow
    the widened student) and set the weights and widths they claim."""
    from mmengine.config import DictAction

    from cls_kd.registry import MODELS
    runner = tool_loader('tools/run_digits_demo.py')
    exp = runner.EXPERIMENTS[experiment]
    seen = {}
    for run in exp.students:
        if not run.distilled:
            continue
        cfg = tool.load_config(f'{repo_root}/{run.config}')
        options = {}
        for option in (*run.options, 'model.teacher.random_init=True'):
            key, value = option.split('=', 1)
            options[key] = DictAction._parse_iterable(value)
        cfg.merge_from_dict(options)
        model = MODELS.build(cfg.model)  # dry run: shapes must fit
        width = model.student.head.fc.in_features
        weights = {name: loss.loss_weight
                   for name, loss in model.losses.items()}
        seen[run.key] = (width, weights)
    if experiment == 'scalekd-sweep':
        assert seen['cnn_kd'] == (32, dict(loss_kd=0.5))
        assert seen['cnn_x1'][1]['loss_s3_alt'] == pytest.approx(0.06)
        assert seen['cnn_x0.1'][1] == pytest.approx(dict(
            loss_s3=0.008, loss_s3_alt=0.006, loss_s4=0.008,
            loss_s4_alt=0.006, loss_kd=0.5))
    else:
        assert seen['cnn16_kd'] == (128, dict(loss_kd=0.5))
        assert seen['cnn16_x1'][0] == 128
        assert seen['cnn16_x1'][1]['loss_s4'] == pytest.approx(0.08)
