"""The guard that skips non-finite optimizer steps on every rank."""
import copy
import os
import socket
import subprocess
import sys
import tempfile
import uuid

import pytest
import torch
import torch.nn as nn
from mmengine.logging import MessageHub
from mmengine.model import BaseModel
from mmengine.optim import OptimWrapper, build_optim_wrapper
from mmengine.runner import Runner

import cls_kd
from cls_kd.engine import NonFiniteStepError
from cls_kd.engine.optimizers import non_finite
from cls_kd.registry import OPTIM_WRAPPERS

cls_kd.register_all_modules()

NAN, INF = float('nan'), float('inf')


@pytest.fixture
def hub():
    """A fresh current MessageHub, the one a wrapper built now reads."""
    return MessageHub.get_instance(f'nonfinite-{uuid.uuid4()}')


@pytest.fixture
def warnings(monkeypatch):
    logged = []
    monkeypatch.setattr(non_finite, 'print_log',
                        lambda msg, **kwargs: logged.append(msg))
    return logged


def _model():
    torch.manual_seed(0)
    return nn.Linear(3, 2)


def _guarded(model, optimizer='SGD', **kwargs):
    optim = dict(type='SGD', lr=0.1, momentum=0.9)
    if optimizer == 'Adam':
        optim = dict(type='Adam', lr=0.1)
    return build_optim_wrapper(
        model,
        dict(type='NonFiniteGuardOptimWrapper', optimizer=optim, **kwargs))


def _loss(model, x, poison=None):
    """A squared-output loss; ``poison`` is added (``'loss+inf'``: finite
    gradients, infinite loss) or multiplied in (``nan``/``inf``)."""
    loss = model(x).square().mean()
    if poison == 'loss+inf':
        return loss + INF
    if poison is not None:
        return loss * poison
    return loss


def _params(model):
    return [p.detach().clone() for p in model.parameters()]


def _same(params, model):
    return all(torch.equal(a, b) for a, b in zip(params, model.parameters()))


def test_finite_steps_match_plain_wrapper_with_clipping(hub):
    guarded_model, plain_model = _model(), _model()
    guarded = _guarded(guarded_model, clip_grad=dict(max_norm=0.05))
    plain = OptimWrapper(
        torch.optim.SGD(plain_model.parameters(), lr=0.1, momentum=0.9),
        clip_grad=dict(max_norm=0.05))
    for _ in range(3):
        x = torch.randn(4, 3)
        guarded.update_params(_loss(guarded_model, x))
        plain.update_params(_loss(plain_model, x))
    for a, b in zip(guarded_model.parameters(), plain_model.parameters()):
        assert torch.equal(a, b)
    assert 'train/nonfinite_skips' not in hub.log_scalars
    assert guarded.consecutive_skips == 0 and guarded.nonfinite_skips == 0


@pytest.mark.parametrize('poison', [NAN, INF, 'loss+inf'])
def test_nonfinite_step_leaves_params_and_adam_state(hub, warnings, poison):
    model = _model()
    wrapper = _guarded(model, optimizer='Adam')
    wrapper.update_params(_loss(model, torch.randn(4, 3)))
    params = _params(model)
    state = copy.deepcopy(wrapper.optimizer.state_dict()['state'])

    wrapper.update_params(_loss(model, torch.randn(4, 3), poison))

    assert _same(params, model)
    after = wrapper.optimizer.state_dict()['state']
    for key in state:
        assert float(after[key]['step']) == float(state[key]['step']) == 1
        assert torch.equal(after[key]['exp_avg'], state[key]['exp_avg'])
        assert torch.equal(after[key]['exp_avg_sq'], state[key]['exp_avg_sq'])
    assert all(p.grad is None for p in model.parameters())
    assert hub.get_scalar('train/nonfinite_skips').current() == 1
    assert hub.get_scalar('train/nonfinite_consecutive').current() == 1
    what = 'loss' if poison == 'loss+inf' else 'loss and gradients'
    assert warnings == [
        f'Skipped the optimizer step at iter 2: non-finite {what} on at '
        'least one rank (1 in a row, 1 in total). Parameters and optimizer '
        'state are unchanged.'
    ]


def test_nan_gradient_with_finite_loss_is_skipped(hub, warnings):
    model = _model()
    wrapper = _guarded(model)
    params = _params(model)
    handle = model.weight.register_hook(lambda grad: grad * NAN)
    wrapper.backward(_loss(model, torch.randn(4, 3)))
    handle.remove()
    wrapper.step()  # called directly, without update_params' zero_grad
    assert _same(params, model)
    assert all(p.grad is None for p in model.parameters())
    assert 'non-finite gradients on at least one rank' in warnings[0]


def test_nan_micro_batch_skips_the_accumulation_window(hub):
    model, fresh_model = _model(), _model()
    wrapper = _guarded(model, accumulative_counts=2)
    fresh = OptimWrapper(
        torch.optim.SGD(fresh_model.parameters(), lr=0.1, momentum=0.9),
        accumulative_counts=2)
    params = _params(model)
    xs = torch.randn(4, 4, 3)

    wrapper.update_params(_loss(model, xs[0], NAN))
    wrapper.update_params(_loss(model, xs[1]))
    assert _same(params, model)
    assert wrapper.consecutive_skips == 1

    # The next window steps as if the poisoned one had never happened.
    for x in xs[2:]:
        wrapper.update_params(_loss(model, x))
        fresh.update_params(_loss(fresh_model, x))
    assert not _same(params, model)
    for a, b in zip(model.parameters(), fresh_model.parameters()):
        assert torch.equal(a, b)
    assert wrapper.consecutive_skips == 0
    assert hub.get_scalar('train/nonfinite_consecutive').current() == 0
    assert hub.get_scalar('train/nonfinite_skips').current() == 1


def test_consecutive_skips_stop_training_and_finite_step_resets(hub):
    model = _model()
    wrapper = _guarded(model, max_consecutive_skips=3)
    x = torch.randn(4, 3)
    for _ in range(2):
        wrapper.update_params(_loss(model, x, NAN))
    wrapper.update_params(_loss(model, x))
    assert wrapper.consecutive_skips == 0
    for _ in range(2):
        wrapper.update_params(_loss(model, x, INF))
    params = _params(model)
    with pytest.raises(NonFiniteStepError) as error:
        wrapper.update_params(_loss(model, x, 'loss+inf'))
    assert str(error.value) == (
        '3 optimizer steps in a row had a non-finite loss (nan or inf), the '
        'last at iter 6; training stopped with the parameters of the last '
        'finite step. Check the learning rate and its warm-up, the mixed '
        'precision settings (loss scale, fp16 vs bf16), and the teacher '
        'outputs (inf in the logits of a low-precision teacher), or raise '
        'max_consecutive_skips (now 3).')
    assert isinstance(error.value, RuntimeError)
    assert _same(params, model)
    assert hub.get_scalar('train/nonfinite_skips').current() == 5


def test_bad_max_consecutive_skips_is_refused():
    with pytest.raises(ValueError, match=r'optim_wrapper\.max_consecutive_'
                       r'skips must be an int >= 1, got 0\.'):
        _guarded(_model(), max_consecutive_skips=0)


def test_state_dict_round_trip_and_old_checkpoints(hub):
    model = _model()
    wrapper = _guarded(model, optimizer='Adam')
    x = torch.randn(4, 3)
    wrapper.update_params(_loss(model, x))
    for _ in range(2):
        wrapper.update_params(_loss(model, x, NAN))
    wrapper.update_params(_loss(model, x))
    wrapper.update_params(_loss(model, x, NAN))
    state = wrapper.state_dict()
    assert state['nonfinite_guard'] == dict(skips=3, consecutive=1,
                                            longest=2)

    resumed = _guarded(_model(), optimizer='Adam')
    resumed.load_state_dict(state)
    assert (resumed.nonfinite_skips, resumed.consecutive_skips,
            resumed.longest_skip_run) == (3, 1, 2)
    assert 'nonfinite_guard' in state  # the caller's dict is not consumed
    assert float(resumed.optimizer.state_dict()['state'][0]['step']) == 2

    # Saved before the longest run was kept: the current run stands in.
    state['nonfinite_guard'] = dict(skips=3, consecutive=1)
    resumed.load_state_dict(state)
    assert resumed.longest_skip_run == 1

    old_model = _model()
    old = OptimWrapper(torch.optim.Adam(old_model.parameters(), lr=0.1))
    old.update_params(_loss(old_model, x))
    fresh = _guarded(_model(), optimizer='Adam')
    fresh.load_state_dict(old.state_dict())
    assert (fresh.nonfinite_skips, fresh.consecutive_skips) == (0, 0)


def test_built_from_cls_kd_registry_and_autocast_guard(hub):
    model = _model()
    wrapper = OPTIM_WRAPPERS.build(
        dict(type='NonFiniteGuardOptimWrapper',
             optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
             max_consecutive_skips=5))
    assert wrapper.max_consecutive_skips == 5 and wrapper.skip_nonfinite

    autocast = OPTIM_WRAPPERS.build(
        dict(type='AutocastOptimWrapper',
             optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
             skip_nonfinite=True, max_consecutive_skips=2))
    params = _params(model)
    x = torch.randn(4, 3)
    with autocast.optim_context(model):
        loss = model(x).float().square().mean() * INF
    autocast.update_params(loss)
    assert _same(params, model) and autocast.consecutive_skips == 1

    by_default = OPTIM_WRAPPERS.build(
        dict(type='AutocastOptimWrapper',
             optimizer=torch.optim.SGD(model.parameters(), lr=0.1)))
    by_default.update_params(_loss(model, x, NAN))
    assert _same(params, model) and by_default.skip_nonfinite is True
    assert by_default.state_dict()['nonfinite_guard'] == dict(
        skips=1, consecutive=1, longest=1)


def test_amp_wrapper_unscales_before_checking(hub, monkeypatch):
    """The AMP guard, run on CPU with a CPU ``GradScaler``."""
    from mmengine.optim.optimizer import amp_optimizer_wrapper
    monkeypatch.setattr(amp_optimizer_wrapper, 'is_cuda_available',
                        lambda: True)
    model = _model()
    wrapper = OPTIM_WRAPPERS.build(
        dict(type='NonFiniteGuardAmpOptimWrapper',
             optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
             clip_grad=dict(max_norm=0.05), max_consecutive_skips=3))
    wrapper.loss_scaler = torch.amp.GradScaler('cpu', init_scale=2.0**20)
    plain_model = _model()
    plain = OptimWrapper(torch.optim.SGD(plain_model.parameters(), lr=0.1),
                         clip_grad=dict(max_norm=0.05))
    x = torch.randn(4, 3)

    params = _params(model)
    wrapper.update_params(_loss(model, x, 'loss+inf'))
    assert _same(params, model)
    assert wrapper.loss_scaler.get_scale() == 2.0**20  # not the scale's fault

    wrapper.update_params(_loss(model, x))
    plain.update_params(_loss(plain_model, x))
    for a, b in zip(model.parameters(), plain_model.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    assert wrapper.consecutive_skips == 0

    params = _params(model)
    wrapper.update_params(_loss(model, x, NAN))
    assert _same(params, model)
    assert wrapper.loss_scaler.get_scale() == 2.0**19  # backed off
    assert hub.get_scalar('train/nonfinite_skips').current() == 2


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _rank_worker(rank, port, out_dir):
    import torch.distributed as dist
    dist.init_process_group(
        'gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank,
        world_size=2)
    try:
        MessageHub.get_instance(f'rank{rank}')
        model = _model()  # same weights and data on both ranks, no DDP
        wrapper = _guarded(model)
        x = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
        start = _params(model)
        # Step 1: only rank 1's loss is infinite, its gradients are finite.
        wrapper.update_params(
            _loss(model, x, 'loss+inf' if rank == 1 else None))
        after_loss = _params(model)
        # Step 2: only rank 1 has a nan gradient, its loss is finite.
        handle = (model.weight.register_hook(lambda grad: grad * NAN)
                  if rank == 1 else None)
        wrapper.update_params(_loss(model, x))
        if handle is not None:
            handle.remove()
        after_grad = _params(model)
        wrapper.update_params(_loss(model, x))
        torch.save(
            dict(start=start, after_loss=after_loss, after_grad=after_grad,
                 end=_params(model), skips=wrapper.nonfinite_skips),
            os.path.join(out_dir, f'rank{rank}.pth'))
    finally:
        dist.destroy_process_group()


def _run_ranks(out_dir):
    """Fork the two ranks (run in a fresh interpreter by the test)."""
    import torch.multiprocessing as mp
    mp.start_processes(_rank_worker, args=(_free_port(), out_dir),
                       nprocs=2, start_method='fork')


@pytest.mark.slow
def test_one_rank_nonfinite_skips_on_every_rank():
    # A fresh interpreter forks the ranks: a fork of this process could not
    # run backward once its autograd engine has started threads (as after a
    # test that trained a compiled model).
    code = (f'import runpy; runpy.run_path({__file__!r})["_run_ranks"]'
            f'(__import__("sys").argv[1])')
    with tempfile.TemporaryDirectory() as out_dir:
        subprocess.run([sys.executable, '-c', code, out_dir], check=True)
        ranks = [torch.load(os.path.join(out_dir, f'rank{r}.pth'))
                 for r in range(2)]
    for result in ranks:
        for key in ('after_loss', 'after_grad'):
            assert all(torch.equal(a, b)
                       for a, b in zip(result['start'], result[key])), key
        assert not torch.equal(result['start'][0], result['end'][0])
        assert result['skips'] == 2
    assert all(torch.equal(a, b)
               for a, b in zip(ranks[0]['end'], ranks[1]['end']))


class _Toy(BaseModel):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 2)

    def forward(self, x, poison, mode='loss'):
        loss = self.linear(torch.stack(x)).square().mean()
        return dict(loss=loss * torch.tensor(poison))


def test_runner_logs_skips_and_stops(tmp_path):
    poison = [1.0, 1.0, NAN, 1.0, INF, NAN, NAN, 1.0]
    runner = Runner(
        model=_Toy(),
        work_dir=str(tmp_path),
        train_dataloader=dict(
            dataset=[dict(x=torch.randn(3), poison=p) for p in poison],
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=1,
            collate_fn=dict(type='pseudo_collate')),
        train_cfg=dict(by_epoch=False, max_iters=len(poison)),
        optim_wrapper=dict(
            type='NonFiniteGuardOptimWrapper',
            optimizer=dict(type='SGD', lr=0.1),
            max_consecutive_skips=3),
        default_hooks=dict(logger=dict(type='LoggerHook', interval=1)),
        default_scope='cls_kd',
        experiment_name=f'nonfinite-{uuid.uuid4()}')
    with pytest.raises(NonFiniteStepError, match='3 optimizer steps in a '
                       r'row had a non-finite loss and gradients .* at '
                       'iter 7;'):
        runner.train()
    assert runner.optim_wrapper.nonfinite_skips == 4
    assert torch.isfinite(runner.model.linear.weight).all()
    with open(os.path.join(runner.log_dir, f'{runner.timestamp}.log')) as f:
        log = f.read()
    assert ('Skipped the optimizer step at iter 3: non-finite loss and '
            'gradients on at least one rank (1 in a row, 1 in total)') in log
    assert 'nonfinite_skips: 3' in log


def test_bad_skip_nonfinite_is_refused():
    with pytest.raises(ValueError, match=r"optim_wrapper\.skip_nonfinite "
                       r"must be True or False, got 'no'\."):
        _guarded(_model(), skip_nonfinite='no')


@pytest.mark.parametrize('kind', [
    'NonFiniteGuardOptimWrapper', 'NonFiniteGuardAmpOptimWrapper',
    'AutocastOptimWrapper'
])
def test_one_key_turns_the_guard_off(kind, hub, monkeypatch):
    """``--cfg-options optim_wrapper.skip_nonfinite=False`` on each guarded
    wrapper: nothing is checked, counted or saved."""
    import argparse

    from mmengine.config import Config, DictAction
    from mmengine.optim.optimizer import amp_optimizer_wrapper
    monkeypatch.setattr(amp_optimizer_wrapper, 'is_cuda_available',
                        lambda: True)  # the AMP wrapper, on CPU
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    options = parser.parse_args(
        ['--cfg-options', 'optim_wrapper.skip_nonfinite=False']).cfg_options
    cfg = Config(
        dict(optim_wrapper=dict(type=kind, optimizer=dict(type='SGD',
                                                          lr=0.1))))
    cfg.merge_from_dict(options)
    model = _model()
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    assert wrapper.skip_nonfinite is False
    if kind == 'NonFiniteGuardAmpOptimWrapper':
        wrapper.loss_scaler = torch.amp.GradScaler('cpu', init_scale=4.0)
    with wrapper.optim_context(model):
        assert not model._forward_hooks  # nothing recorded either
    wrapper.update_params(_loss(model, torch.randn(4, 3), NAN))
    if kind == 'NonFiniteGuardAmpOptimWrapper':
        # mmengine's GradScaler skips it on its own, as without the guard.
        assert wrapper.loss_scaler.get_scale() == 2.0
    else:
        assert torch.isnan(model.weight).all()
    assert wrapper.nonfinite_skips == 0
    assert 'train/nonfinite_skips' not in hub.log_scalars
    assert 'nonfinite_guard' not in wrapper.state_dict()


def _toy_runner(tmp_path, poison, **wrapper):
    return Runner(
        model=_Toy(),
        work_dir=str(tmp_path),
        train_dataloader=dict(
            dataset=[dict(x=torch.randn(3), poison=p) for p in poison],
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=1,
            collate_fn=dict(type='pseudo_collate')),
        train_cfg=dict(by_epoch=False, max_iters=len(poison)),
        optim_wrapper=dict(
            type='NonFiniteGuardOptimWrapper',
            optimizer=dict(type='SGD', lr=0.1), **wrapper),
        default_hooks=dict(logger=dict(type='LoggerHook', interval=1)),
        default_scope='cls_kd',
        experiment_name=f'nonfinite-{uuid.uuid4()}')


def _log_of(runner):
    with open(os.path.join(runner.log_dir, f'{runner.timestamp}.log')) as f:
        return f.read()


@pytest.mark.parametrize('poison, line', [
    ([1.0, NAN, NAN, 1.0, INF, 1.0],
     'WARNING - non-finite steps skipped: 3 (max in a row 2; 3 in a row '
     'stop the run)'),
    ([1.0, 1.0], 'INFO - non-finite steps skipped: 0 (max in a row 0; 3 in '
     'a row stop the run)'),
])
def test_summary_line_at_the_end_of_training(tmp_path, poison, line):
    runner = _toy_runner(tmp_path, poison, max_consecutive_skips=3)
    runner.train()
    log = _log_of(runner)
    assert log.count('non-finite steps skipped') == 1
    assert line in log


def test_no_summary_line_with_the_guard_off(tmp_path):
    runner = _toy_runner(tmp_path, [1.0, 1.0], skip_nonfinite=False)
    runner.train()
    assert 'non-finite steps skipped' not in _log_of(runner)


class _TwoTerms(BaseModel):
    """``loss_a`` is 0.25, ``loss_b`` infinite."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 2)

    def forward(self, inputs, data_samples=None, mode='loss'):
        out = self.linear(inputs)
        return dict(loss_a=out.mean() * 0 + 0.25,
                    loss_b=out.abs().mean() * INF,
                    accuracy=torch.tensor(50.))


def _samples(n):
    from mmpretrain.structures import DataSample
    return [DataSample(metainfo=dict(img_path=f'data/img{i}.png'))
            for i in range(n)]


def _stop_message(model, data, steps=2):
    wrapper = _guarded(model, max_consecutive_skips=steps)
    for _ in range(steps - 1):
        model.train_step(data, wrapper)
    with pytest.raises(NonFiniteStepError) as error:
        model.train_step(data, wrapper)
    return str(error.value)


def test_stop_message_names_the_loss_terms_and_images(hub, warnings):
    message = _stop_message(
        _TwoTerms(), dict(inputs=torch.randn(6, 3), data_samples=_samples(6)))
    assert message.endswith(
        'raise max_consecutive_skips (now 2).\n'
        'The last forward of that step, on this rank:\n'
        '  loss terms: loss_a=0.25, loss_b=inf, accuracy=50 (not finite: '
        'loss_b)\n'
        '  images of the batch (first 4 of 6): data/img0.png, data/img1.png, '
        'data/img2.png, data/img3.png')


def test_stop_message_names_the_samples_with_nonfinite_inputs(hub, warnings):
    inputs = torch.randn(3, 3)
    inputs[2, 1] = NAN
    message = _stop_message(
        _TwoTerms(), dict(inputs=inputs, data_samples=_samples(3)))
    assert message.endswith(
        '  loss terms: loss_a=nan, loss_b=nan, accuracy=50 (not finite: '
        'loss_a, loss_b)\n'
        '  samples whose input holds nan/inf after preprocessing (1): 2 '
        '(data/img2.png)\n'
        '  images of the batch (first 3 of 3): data/img0.png, data/img1.png, '
        'data/img2.png')


def test_stop_message_of_a_plain_mmpretrain_classifier(hub, warnings,
                                                        tiny_vit):
    from mmpretrain.models import ImageClassifier  # noqa: F401
    from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
    model = MMPRETRAIN_MODELS.build(tiny_vit())
    model.backbone.register_forward_hook(
        lambda module, args, out: tuple(o * INF for o in out))
    samples = [s.set_gt_label(i) for i, s in enumerate(_samples(2))]
    images = [torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
              for _ in samples]
    message = _stop_message(model, dict(inputs=images, data_samples=samples),
                            steps=3)
    assert message.startswith('3 optimizer steps in a row had a non-finite '
                              'loss and gradients')
    assert message.endswith(
        'The last forward of that step, on this rank:\n'
        '  loss terms: loss=nan (not finite: loss)\n'
        '  images of the batch (first 2 of 2): data/img0.png, data/img1.png')


@pytest.mark.slow
def test_train_tool_stops_a_digits_kd_run_nonzero(repo_root, digits_root,
                                                  tmp_path):
    """tools/train.py on the digits KD config with an infinite KD term:
    two skipped steps, then exit status 1 and a message that names the term
    and the images."""
    (tmp_path / 'inf_kd_loss.py').write_text(
        'from cls_kd.models.losses import KDLoss\n'
        'from cls_kd.registry import MODELS\n\n\n'
        '@MODELS.register_module()\n'
        'class InfKDLoss(KDLoss):\n\n'
        '    def forward(self, logits_s, logits_t):\n'
        '        return super().forward(logits_s, logits_t) * float("inf")\n')
    config = tmp_path / 'inf_kd.py'
    config.write_text(
        f'_base_ = [{repo_root + "/configs/kd/kd_resnet18-c16_vit-t4-p8_1xb64_digits.py"!r}]\n'  # noqa: E501
        "custom_imports = dict(imports=['inf_kd_loss'])\n"
        "model = dict(losses=dict(loss_kd=dict(type='InfKDLoss')))\n"
        'optim_wrapper = dict(max_consecutive_skips=2)\n')
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=str(tmp_path))
    proc = subprocess.run(
        [
            sys.executable, 'tools/train.py', str(config), '--work-dir',
            str(tmp_path / 'work'), '--no-validate', '--cfg-options',
            f'train_dataloader.dataset.data_root={digits_root}',
            'train_dataloader.dataset.indices=16',
            'train_dataloader.batch_size=8', 'train_cfg.max_epochs=1',
            'train_dataloader.num_workers=0',
            'train_dataloader.persistent_workers=False',
            'model.teacher.random_init=True'
        ],
        cwd=repo_root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert ('NonFiniteStepError: 2 optimizer steps in a row had a '
            'non-finite loss and gradients') in proc.stderr
    terms = next(line for line in proc.stderr.splitlines()
                 if line.startswith('  loss terms: '))
    assert 'loss_kd=inf' in terms and terms.endswith('(not finite: loss_kd)')
    assert f'  images of the batch (first 4 of 8): {digits_root}/train/' \
        in proc.stderr


def test_large_finite_gradients_are_not_skipped(hub):
    """The fast 2-norm overflows on them; the exact check lets them step."""
    grads = [torch.tensor([1e20, 1e20]), torch.full((70000, ), 300.,
                                                    dtype=torch.float16)]
    params = [torch.zeros_like(g, requires_grad=True) for g in grads]
    for p, g in zip(params, grads):
        p.grad = g
    cpu = torch.device('cpu')
    for i in range(2):
        assert not non_finite.grads_are_finite(params[i:i + 1], cpu,
                                               exact=False)
        assert non_finite.grads_are_finite(params[i:i + 1], cpu)
    model = _model()
    wrapper = _guarded(model)
    model.weight.register_hook(lambda grad: grad * 1e25)
    wrapper.update_params(_loss(model, torch.randn(4, 3)))
    assert wrapper.nonfinite_skips == 0
    assert torch.isfinite(model.weight).all() and \
        model.weight.abs().max() > 1e20
