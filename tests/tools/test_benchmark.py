"""Smoke test of tools/analysis/benchmark.py (no timing claims)."""
import copy
import importlib.util
import json
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
KD_CONFIG = 'configs/kd/kd_resnet18-c16_vit-t4-p8_1xb64_digits.py'
EXPECTED_KEYS = {
    'config', 'device', 'device_name', 'torch', 'precision', 'amp',
    'compile', 'batch_size', 'input_size', 'iters', 'warmup',
    'images_per_s', 'step_ms_mean', 'step_ms_std', 'step_ms', 'teacher_ms',
    'teacher_share', 'peak_memory_mib', 'peak_memory_kind', 'param_groups',
    'trainable_params'
}


def _load(name):
    path = osp.join(ROOT, 'tools', 'analysis', f'{name}.py')
    spec = importlib.util.spec_from_file_location(f'cls_kd_{name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


benchmark = _load('benchmark')
reference_step = _load('reference_step')
speed_table = _load('speed_table')


def test_benchmark_kd_digits_cpu(tmp_path, monkeypatch, capsys):
    # The teacher's config path in the KD config is relative to the repo.
    monkeypatch.chdir(ROOT)
    out = tmp_path / 'results.json'
    benchmark.main([
        KD_CONFIG, '--device', 'cpu', '--iters', '2', '--warmup', '1',
        '--batch-size', '4', '--out',
        str(out)
    ])
    results = json.loads(out.read_text())
    assert EXPECTED_KEYS <= set(results)
    assert results['images_per_s'] > 0
    # Shares are computed from the timings, not asserted on (no timing
    # claims in tests).
    assert results['teacher_share'] == pytest.approx(
        results['teacher_ms']['teacher'] / results['step_ms_mean'])
    assert list(results['teacher_ms']) == ['teacher']
    assert results['batch_size'] == 4
    assert results['input_size'] == [32, 32]
    assert len(results['step_ms']) == 2
    assert results['param_groups'] >= 1
    assert results['peak_memory_mib'] > 0
    printed = capsys.readouterr().out
    assert 'images/s' in printed and 'teacher share' in printed


def test_benchmark_needs_optim_wrapper(tmp_path):
    config = tmp_path / 'no_optim.py'
    config.write_text("model = dict(type='ImageClassifier')\n")
    with pytest.raises(SystemExit, match='no `optim_wrapper`'):
        benchmark.main([str(config), '--device', 'cpu'])


@pytest.mark.skipif(torch.cuda.is_available(), reason='CUDA is available')
def test_benchmark_cuda_without_cuda():
    with pytest.raises(SystemExit, match='CUDA is not available'):
        benchmark.main([osp.join(ROOT, KD_CONFIG), '--device', 'cuda'])


REFERENCE_KEYS = {
    'images_per_s', 'step_ms_mean', 'step_ms_std', 'step_ms', 'teacher_ms',
    'teacher_share', 'peak_memory_mib', 'compile'
}


def test_benchmark_reference_json(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    out = tmp_path / 'results.json'
    benchmark.main([
        KD_CONFIG, '--device', 'cpu', '--iters', '2', '--warmup', '1',
        '--batch-size', '4', '--reference', '--out',
        str(out)
    ])
    results = json.loads(out.read_text())
    assert EXPECTED_KEYS | {'speed_vs_reference', 'memory_vs_reference',
                            'channels_last'} <= set(results)
    ref = results['reference']
    assert set(ref) == REFERENCE_KEYS
    assert len(ref['step_ms']) == 2 and ref['compile'] is False
    assert results['speed_vs_reference'] == pytest.approx(
        results['images_per_s'] / ref['images_per_s'])
    # On the CPU only the process's peak RSS exists: not split per side.
    assert ref['peak_memory_mib'] is None
    assert results['memory_vs_reference'] is None
    assert ref['teacher_share'] == pytest.approx(ref['teacher_ms'] /
                                                 ref['step_ms_mean'])
    printed = capsys.readouterr().out
    assert 'cls_kd / reference' in printed and '[reference] 2/2' in printed
    table = speed_table.main([str(out)]).splitlines()
    assert len(table) == 3 and table[2].startswith(
        '| kd_resnet18-c16_vit-t4-p8_1xb64_digits.py | ')
    cells = table[2].strip('| ').split(' | ')
    assert cells[3:5] == ['4', 'no']
    assert cells[7] == f'{results["speed_vs_reference"]:.3f}'
    assert cells[9:] == ['n/a (CPU: one process)', 'n/a']


def test_speed_table_needs_reference_results(tmp_path):
    path = tmp_path / 'plain.json'
    path.write_text(json.dumps(dict(reference=None)))
    with pytest.raises(SystemExit, match='has no reference results'):
        speed_table.main([str(path)])


@pytest.mark.parametrize('config, option, message', [
    ('configs/scalekd/scalekd_vit-4x64-p8_resnet18-c4_1xb64_digits.py',
     'model.losses.loss_s3.inputs.preds=cap3(s_s3)',  # no TPP
     r"loss_s3: DualViewMimicLoss reads \{'preds': 'cap3\(s_s3\)'"),
    ('configs/attndistill/attndistill_vit-4x64-p8_vit-4x32-p8_1xb64_'
     'digits.py', 'model.taps.s_attn.selector.query=0',
     r'loss_attn: AttnDistillAttentionLoss reads .* a student and a teacher '
     r"tap with selector \{'type': 'attn_probs', 'query': 'cls'\}"),
    ('configs/kd/kd_resnet18-c16_vit-t4-p8_1xb64_digits.py',
     'model.losses.loss_kd.inputs.logits_s=logits_t',  # the teacher's twice
     r"loss_kd: KDLoss reads \{'logits_s': 'logits_t'"),
])
def test_benchmark_reference_refuses_other_work(config, option, message,
                                                monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit, match='--reference: ' + message):
        benchmark.main([config, '--device', 'cpu', '--reference',
                        '--cfg-options', option])


def _built(config, **options):
    argv = [osp.join(ROOT, config)]
    if options:
        argv += ['--cfg-options', *[f'{k}={v}' for k, v in options.items()]]
    cfg = benchmark.load_config(benchmark.parse_args(argv))
    model, _ = benchmark.build_model(cfg)
    return model, cfg


def _reference(model, cfg, amp=None):
    """The reference for a built model, with cls_kd's wrapper as the
    benchmark builds it."""
    wrapper = benchmark.build_wrapper(model, cfg, amp, torch.device('cpu'))
    return reference_step.ReferenceStep(model, cfg.model, cfg.optim_wrapper,
                                        wrapper, torch.device('cpu')), wrapper


DEIT_CONFIG = ('configs/deit/deit_resnet18-c16_vit-t4-p8-distilled_1xb64_'
               'digits.py')
DIGITS_CONFIGS = [
    'configs/kd/kd_resnet18-c16_vit-t4-p8_1xb64_digits.py',
    'configs/dkd/dkd_resnet18-c16_vit-t4-p8_1xb64_digits.py',
    'configs/nkd/nkd_resnet18-c16_vit-t4-p8_1xb64_digits.py',
    'configs/vitkd/vitkd_deit3-6x128-p8_vit-4x32-p8_1xb64_digits.py',
    'configs/vitkd/vitkd-nkd_deit3-6x128-p8_vit-4x32-p8_1xb64_digits.py',
    DEIT_CONFIG,
]


@pytest.mark.parametrize('config, options', [
    *[(config, {}) for config in DIGITS_CONFIGS],
    (DEIT_CONFIG, {'model.losses.loss_deit.mode': 'soft',
                   'model.losses.loss_deit.temperature': 3.0}),
])
def test_reference_computes_the_distillers_losses_and_gradients(
        monkeypatch, config, options):
    """Same inputs and weights: same loss values and student/connector
    gradients (eval mode: no dropout; one seed for ViTKD's random mask);
    soft (mixed) targets, whose arg-max are the NKD/DKD labels."""
    monkeypatch.chdir(ROOT)
    model, cfg = _built(config, **options)
    model.eval()
    ref, _ = _reference(model, cfg)
    ref.student.eval()
    data = model.data_preprocessor(benchmark.make_batch(4, (32, 32), 10))
    x, samples = data['inputs'], data['data_samples']
    labels = torch.cat([s.gt_label for s in samples])
    # A mixed batch, as Mixup gives it: 0.7 of one class, 0.3 of another.
    scores = 0.7 * F.one_hot(labels, 10) + 0.3 * F.one_hot(
        labels.roll(1), 10)
    for sample, score in zip(samples, scores):
        sample.set_gt_score(score)
    torch.manual_seed(3)
    ours = {k: v for k, v in model.loss(x, samples).items() if 'loss' in k}
    torch.manual_seed(3)
    theirs = ref.forward_losses(x, scores)
    assert list(theirs) == list(ours)
    for name in ours:
        assert theirs[name].item() == pytest.approx(
            ours[name].item(), rel=1e-5, abs=1e-7), name
    sum(ours.values()).backward()
    sum(theirs.values()).backward()
    grads = {id(p): p.grad for p in model.parameters()}
    assert ref.pairs and all(p.requires_grad for p, _ in ref.pairs)
    for theirs_p, mine in [(r, grads[id(d)]) for d, r in ref.pairs]:
        if mine is None:  # e.g. unused by this config's terms
            assert theirs_p.grad is None
        else:
            assert torch.allclose(theirs_p.grad, mine, rtol=1e-4, atol=1e-6)


def test_reference_optimizer_follows_cls_kds(monkeypatch):
    """Same optimizer class and settings; the same parameters in groups
    with the same settings (cls_kd's equal groups merged)."""
    monkeypatch.chdir(ROOT)
    model, cfg = _built(
        'configs/vitkd/vitkd-nkd_deit3-6x128-p8_vit-4x32-p8_1xb64_digits.py')
    ref, wrapper = _reference(model, cfg)
    ours = wrapper.optimizer
    assert type(ref.optimizer) is type(ours) is torch.optim.AdamW
    copies = dict(ref.pairs)

    def settings(group):
        return {k: v for k, v in group.items() if k != 'params'}

    mapped = {}
    for group in ours.param_groups:
        key = repr(sorted(settings(group).items()))
        mapped.setdefault(key, set()).update(
            id(copies[p]) for p in group['params'])
    got = {
        repr(sorted(settings(g).items())): {id(p) for p in g['params']}
        for g in ref.optimizer.param_groups
    }
    assert got == mapped
    # The digits schedule: no decay on norms and biases.
    no_decay = [g for g in ref.optimizer.param_groups
                if g['weight_decay'] == 0]
    assert len(ref.optimizer.param_groups) == 2 and len(no_decay) == 1
    assert id(ref.student.backbone.ln1.weight) in {
        id(p) for p in no_decay[0]['params']}


def test_float16_wrapper_runs_in_float32_on_the_cpu(monkeypatch, capsys):
    """mmengine's AmpOptimWrapper refuses CPUs: without --amp the benchmark
    times the config's float32 wrapper there, and says so."""
    monkeypatch.chdir(ROOT)
    model, cfg = _built(KD_CONFIG, **{
        'optim_wrapper.type': 'NonFiniteGuardAmpOptimWrapper',
        'optim_wrapper.dtype': 'float16',
        'optim_wrapper.loss_scale': 'dynamic'})
    wrapper = benchmark.build_wrapper(model, cfg, None, torch.device('cpu'))
    assert type(wrapper).__name__ == 'NonFiniteGuardOptimWrapper'
    assert not hasattr(wrapper, 'cast_dtype') and wrapper.skip_nonfinite
    assert ('NonFiniteGuardAmpOptimWrapper (float16 with loss scaling) needs '
            'a GPU: NonFiniteGuardOptimWrapper (float32) on the CPU'
            ) in capsys.readouterr().out


def test_reference_runs_under_the_wrappers_autocast(monkeypatch):
    monkeypatch.chdir(ROOT)
    from cls_kd.utils import choose_amp
    model, cfg = _built(KD_CONFIG)
    amp = choose_amp(torch.device('cpu'), force=True)  # bfloat16
    ref, _ = _reference(model, cfg, amp)
    assert ref.amp_dtype is torch.bfloat16
    with ref.autocast():
        out = ref.student(torch.randn(2, 3, 32, 32), mode='tensor')
    assert out.dtype is torch.bfloat16


def test_reference_preprocessing_is_mmpretrains(monkeypatch):
    """Normalisation and Mixup/CutMix written out give mmpretrain's inputs
    and soft targets for the same random draws."""
    monkeypatch.chdir(ROOT)
    augments = [dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]
    cfg = benchmark.load_config(benchmark.parse_args([KD_CONFIG]))
    cfg.model.student.train_cfg = dict(augments=augments)
    model, _ = benchmark.build_model(cfg)
    ref, _ = _reference(model, cfg)
    batch = benchmark.make_batch(6, (32, 32), 10)
    images = torch.stack(batch['inputs'])
    labels = torch.cat([s.gt_label for s in batch['data_samples']])
    kinds = set()
    for seed in range(6):
        np.random.seed(seed)
        torch.manual_seed(seed)
        want = model.data_preprocessor(copy.deepcopy(batch), True)
        kinds.add(np.random.RandomState(seed).choice(2))
        np.random.seed(seed)
        torch.manual_seed(seed)
        x, y = ref.preprocess(images, labels)
        assert torch.allclose(x, want['inputs'], atol=1e-5)
        scores = torch.stack([s.gt_score for s in want['data_samples']])
        assert torch.allclose(y, scores, atol=1e-6)
    assert kinds == {0, 1}  # both Mixup and CutMix were drawn


def test_reference_step_updates_the_student(monkeypatch):
    monkeypatch.chdir(ROOT)
    model, cfg = _built(
        'configs/vitkd/vitkd-nkd_deit3-6x128-p8_vit-4x32-p8_1xb64_digits.py')
    ref, _ = _reference(model, cfg)
    before = {n: p.detach().clone() for n, p in ref.student.named_parameters()}
    teacher = [p.detach().clone() for p in ref.teacher.parameters()]
    batch = benchmark.make_batch(4, (32, 32), 10)
    ref.step(torch.stack(batch['inputs']),
             torch.cat([s.gt_label for s in batch['data_samples']]))
    moved = [n for n, p in ref.student.named_parameters()
             if not torch.equal(p, before[n])]
    assert 'backbone.layers.0.attn.qkv.weight' in moved
    assert all(p.grad is None for p in ref.student.parameters())
    assert not ref.features  # no tap kept alive into the next step
    assert all(torch.equal(a, b)
               for a, b in zip(teacher, ref.teacher.parameters()))
    # The distiller's own student did not move (the reference has copies).
    assert all(torch.equal(p, before[n])
               for n, p in model.student.named_parameters())


# ------------------------------------------------------------- --guard
def test_guard_option_parsing():
    assert benchmark.parse_args([KD_CONFIG]).guard == 'config'
    assert benchmark.parse_args([KD_CONFIG, '--guard', 'both']).guard == \
        'both'
    with pytest.raises(SystemExit):
        benchmark.parse_args([KD_CONFIG, '--guard', 'twice'])


def test_benchmark_guard_both_times_both_steps(tmp_path, monkeypatch,
                                               capsys):
    monkeypatch.chdir(ROOT)
    out = tmp_path / 'results.json'
    benchmark.main([
        KD_CONFIG, '--device', 'cpu', '--iters', '3', '--warmup', '1',
        '--batch-size', '4', '--guard', 'both', '--out',
        str(out)
    ])
    results = json.loads(out.read_text())
    assert results['nonfinite_guard'] is True
    assert len(results['step_ms']) == len(
        results['guard_off']['step_ms']) == 3
    on, off = results['step_ms'], results['guard_off']['step_ms']
    assert results['guard_cost'] == pytest.approx(
        np.mean(on) / np.mean(off) - 1)
    assert results['guard_cost_paired'] == pytest.approx(
        np.median(np.subtract(on, off)) / np.median(off))
    assert results['guard_check_share'] == pytest.approx(
        results['guard_check_ms'] / results['guard_off']['step_ms_mean'])
    printed = capsys.readouterr().out
    assert '[guard off] warm-up 1/1' in printed
    rows = [line.split('  ')[0] for line in printed.splitlines()]
    assert {'step time', 'non-finite guard', 'step, guard off',
            'guard cost', 'guard check alone'} <= set(rows)


def test_benchmark_guard_needs_a_guarded_wrapper(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit, match=r"--guard both: the config's "
                       'OptimWrapper has no non-finite step guard; set '
                       'optim_wrapper.type to NonFiniteGuardOptimWrapper'):
        benchmark.main([
            KD_CONFIG, '--device', 'cpu', '--guard', 'both', '--cfg-options',
            'optim_wrapper.type=OptimWrapper'
        ])
