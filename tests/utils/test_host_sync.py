"""The host-sync detector, and distillation steps that it finds free of
host-device synchronisation."""
import importlib.util
import os.path as osp
import sys

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode

import cls_kd
from cls_kd.models.distillers import DistillerConfigError
from cls_kd.models.losses.utils import drop_target
from cls_kd.models.losses.vitkd import check_mask_ratio
from cls_kd.utils import resolve_teacher_paths

cls_kd.register_all_modules()


def _load_host_sync():
    """``host_sync.py`` beside this test: a test helper, not part of the
    package (tests are not importable as modules)."""
    path = osp.join(osp.dirname(osp.abspath(__file__)), 'host_sync.py')
    spec = importlib.util.spec_from_file_location('tests_host_sync', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


host_sync = _load_host_sync()
HostSyncError = host_sync.HostSyncError
HostSyncRecorder = host_sync.HostSyncRecorder

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
X = torch.linspace(-1, 1, 20).view(4, 5)
MASK = X > 0
LABELS = torch.tensor([0, 4, 2, 4])
READ = 'aten._local_scalar_dense.default'

# Each call on its own line: the events must point at it.
SYNCING = {
    'item': (lambda: X[0, 0].item(), READ),
    'if': (lambda: 1 if X.sum() > 0 else 0, READ),
    'int': (lambda: int(LABELS[0]), READ),
    'one_hot_counting_classes': (lambda: F.one_hot(LABELS), READ),
    'mask_index': (lambda: X[MASK], 'aten.index.Tensor'),
    'nonzero': (lambda: torch.nonzero(MASK), 'aten.nonzero.default'),
    'where': (lambda: torch.where(MASK), 'aten.nonzero.default'),
    'masked_select': (lambda: X.masked_select(MASK),
                      'aten.masked_select.default'),
    'unique': (lambda: LABELS.unique(), 'aten._unique2.default'),
    'repeat_interleave': (lambda: LABELS.repeat_interleave(LABELS),
                          'aten.repeat_interleave.Tensor'),
    'equal': (lambda: torch.equal(X, X), 'aten.equal.default'),
    'tolist': (lambda: LABELS.tolist(), 'torch.Tensor.tolist'),
    'cpu': (lambda: X.cpu(), 'torch.Tensor.cpu'),
    'tensor_on_a_device': (lambda: torch.tensor([1, 2], device=X.device),
                           'torch.tensor'),
}

FREE = {
    'arithmetic': lambda: (X * 2 + 1).exp().sum(),
    'matmul': lambda: X @ X.T,
    'softmax': lambda: X.softmax(dim=1),
    'gather': lambda: X.gather(1, LABELS[:, None]),
    'cross_entropy': lambda: F.cross_entropy(X, LABELS),
    'one_hot': lambda: F.one_hot(LABELS, 5),  # CPU-only checks: exempt
    'masked_fill': lambda: X.masked_fill(MASK, 0.0),
    'mask_assign_number': lambda: X.clone().__setitem__(MASK, 0.0),
    'argmax_topk': lambda: (X.argmax(1), X.topk(2, dim=1)),
    'repeat_interleave_sized': lambda: LABELS.repeat_interleave(
        LABELS, output_size=10),
    'histc_with_range': lambda: torch.histc(X, bins=4, min=-1, max=1),
    'tensor_on_the_host': lambda: torch.tensor([1, 2]),
    'backward': lambda: F.cross_entropy(X.clone().requires_grad_(),
                                        LABELS).backward(),
}


class _AtenOps(TorchDispatchMode):
    """Every aten op run, by name."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def _line(fn) -> str:
    return f'test_host_sync.py:{fn.__code__.co_firstlineno} in <lambda>'


@pytest.mark.parametrize('name', list(SYNCING))
def test_syncs_are_recorded_at_the_callers_line(name):
    call, op = SYNCING[name]
    with HostSyncRecorder() as syncs:
        call()
    assert syncs.events, name
    for event in syncs.events:
        assert event.op == op
        assert event.where.endswith(_line(call)), str(event)
        assert event.node == ''


@pytest.mark.parametrize('name', list(FREE))
def test_sync_free_ops_are_not_recorded(name):
    with HostSyncRecorder() as syncs:
        FREE[name]()
    assert syncs.events == []


def test_the_message_names_the_torch_call():
    with HostSyncRecorder() as syncs:
        bool(MASK.any())
        X[MASK]
    assert [(e.op, e.api) for e in syncs.events] == [
        (READ, 'torch.Tensor.__bool__'),
        ('aten.index.Tensor', 'torch.Tensor.__getitem__')]
    assert str(syncs.events[1]).startswith(
        'aten.index.Tensor via torch.Tensor.__getitem__ at ')


def test_one_hot_reads_on_cpu_what_cuda_leaves_to_a_device_assert():
    # Why F.one_hot with num_classes is exempt (see the module docstring).
    with _AtenOps() as aten_ops:
        with HostSyncRecorder() as syncs:
            F.one_hot(LABELS, 5)
    assert aten_ops.ops.count(READ) == 2
    assert syncs.events == []


def test_cpu_only_reads_of_ours_are_exempt():
    # check_mask_ratio reads CPU masks only (tests/models/losses/
    # test_vitkd.py): here it reads, finds the ratio right, is not recorded.
    with HostSyncRecorder() as syncs:
        check_mask_ratio(torch.tensor([[1., 0., 0., 1.]]), 0.5)
    assert syncs.events == []


def test_raising_mode_names_the_op_and_line():
    call = SYNCING['nonzero'][0]
    with pytest.raises(HostSyncError) as error:
        with HostSyncRecorder(raise_on_sync=True):
            call()
    assert str(error.value).startswith(
        'Host-device synchronisation: aten.nonzero.default via '
        'torch.nonzero at ')
    assert _line(call) in str(error.value)


def test_backward_ops_are_seen():
    x = X.clone().requires_grad_()
    y = x[MASK].sum()
    with HostSyncRecorder() as syncs:
        y.backward()  # no op of its own: the backward of x[MASK] syncs
    [event] = syncs.events
    assert (event.op, event.api, event.node) == (
        'aten.index_put.default', 'torch.Tensor.backward', 'IndexBackward0')
    assert 'in test_backward_ops_are_seen' in event.where
    # With anomaly mode autograd keeps where the forward created the node.
    with torch.autograd.detect_anomaly(check_nan=False):
        forward_line = sys._getframe().f_lineno + 1
        y = x[MASK].sum()
        with pytest.raises(HostSyncError) as error:
            with HostSyncRecorder(raise_on_sync=True):
                y.backward()
    assert (f'in IndexBackward0 at {osp.relpath(__file__)}:{forward_line} '
            f'in test_backward_ops_are_seen') in str(error.value)


def test_device_copies_on_fake_cuda_tensors():
    with FakeTensorMode():
        on_gpu = torch.empty(3, device='cuda')
        on_host = torch.empty(3)
        with HostSyncRecorder() as syncs:
            on_gpu.to('cpu')
            on_host.to('cuda')
            on_host.to('cuda', non_blocking=True)  # not waited for
            on_gpu.to('cuda', dtype=torch.float16)
            on_gpu.cpu()  # one event per call, not one per op it runs
    assert [e.op for e in syncs.events] == [
        'aten._to_copy.default', 'aten._to_copy.default', 'torch.Tensor.cpu']


def _drop_target_by_mask(logits, labels):
    """``drop_target`` before: boolean-mask indexing."""
    keep = torch.ones_like(logits, dtype=torch.bool)
    keep.scatter_(1, labels[:, None], False)
    return logits[keep].view(logits.shape[0], -1)


def test_drop_target_has_the_values_and_gradient_of_mask_indexing():
    logits = torch.randn(6, 7, dtype=torch.float64)
    labels = torch.tensor([0, 6, 3, 3, 1, 5])
    weights = torch.randn(6, 6, dtype=torch.float64)
    outputs, grads = [], []
    for fn in (_drop_target_by_mask, drop_target):
        x = logits.clone().requires_grad_()
        with HostSyncRecorder() as syncs:
            out = fn(x, labels)
            (out * weights).sum().backward()
        outputs.append(out.detach())
        grads.append(x.grad)
        ops = [e.op for e in syncs.events]
        if fn is drop_target:
            assert ops == []
        else:
            assert ops == ['aten.index.Tensor', 'aten.index_put.default']
    assert torch.equal(outputs[0], outputs[1])
    assert torch.equal(grads[0], grads[1])
    # The target column gets no gradient, the others their weight.
    assert (grads[1].gather(1, labels[:, None]) == 0).all()


def _build(benchmark, config, **options):
    cfg = resolve_teacher_paths(Config.fromfile(osp.join(ROOT, config)))
    cfg.merge_from_dict(options)
    model, _ = benchmark.build_model(cfg)  # random teacher weights
    return model


@pytest.mark.parametrize('config', [
    'configs/kd/kd_resnet18-c16_vit-t4-p8_1xb64_digits.py',
    'configs/dkd/dkd_resnet18-c16_vit-t4-p8_1xb64_digits.py',
    'configs/nkd/nkd_resnet18-c16_vit-t4-p8_1xb64_digits.py',
    'configs/vitkd/vitkd-nkd_deit3-6x128-p8_vit-4x32-p8_1xb64_digits.py',
    'configs/deit/deit_resnet18-c16_vit-t4-p8-distilled_1xb64_digits.py',
    'configs/attndistill/attndistill_vit-4x64-p8_vit-4x32-p8_1xb64_digits.py',
])
def test_a_distillation_step_does_not_sync(benchmark_tool, config):
    benchmark = benchmark_tool
    model = _build(benchmark, config)
    model.train()
    model.set_progress(epoch=0, iter=0)
    batch = benchmark.make_batch(4, model.input_size,
                                 benchmark.num_classes_of(model))
    # Outside: mmengine's stack_batch reads a host-built size tensor.
    data = model.data_preprocessor(batch, training=True)
    with HostSyncRecorder() as syncs:
        losses = model.loss(**data)
        sum(v for k, v in losses.items() if 'loss' in k).backward()
    assert not syncs.events, '\n'.join(map(str, syncs.events))
    assert set(model.wiring.names) <= set(losses)
    assert all(p.grad is not None for p in model.connectors.parameters())
    assert any(p.grad is not None for p in model.student.parameters())


def test_vitkd_mask_ratio_mismatch_still_fails_at_build(benchmark_tool):
    with pytest.raises(DistillerConfigError,
                       match=r'the mask hides 12 of 16 tokens but '
                       r'mask_ratio=0.5 means 8; give the generator and the '
                       r'loss the same mask_ratio'):
        _build(benchmark_tool,
               'configs/vitkd/vitkd_deit3-6x128-p8_vit-4x32-p8_1xb64_'
               'digits.py', **{'model.connectors.gen.mask_ratio': 0.75})
