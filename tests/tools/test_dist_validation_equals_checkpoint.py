"""A 2-process (gloo) KD run of a BatchNorm student: what validation scored
during training is what the saved checkpoint and the exported student score
in one process with tools/test.py, sample by sample (issue 20, part 4)."""
import json
import os
import os.path as osp
import pickle
import socket
import subprocess
import sys

import pytest
import torch

KD_CFG = 'configs/scalekd/kd_vit-4x64-p8_resnet18-c4_1xb64_digits.py'
STUDENT_CFG = 'configs/digits/resnet18-c4_1xb64_digits.py'

pytestmark = pytest.mark.slow  # two processes, then tools/test.py twice
BN_STAT = 'student.backbone.layer4.1.bn2.running_var'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _data(root: str, images: int, **loader) -> str:
    loader = dict(num_workers=0, persistent_workers=False, **loader)
    return (f'dict(dataset=dict(data_root={root!r}, indices={images}), '
            + ', '.join(f'{k}={v!r}' for k, v in loader.items()) + ')')


@pytest.fixture(scope='module')
def run(repo_root, digits_root, tmp_path_factory):
    """2 epochs of 4 steps of 8 images per rank, validated once at the end
    on 128 images (one batch of 64 per rank), every prediction dumped."""
    tmp = tmp_path_factory.mktemp('dist_val')
    config = tmp / 'kd.py'  # what tools/test.py evaluates
    config.write_text(
        f'_base_ = [{osp.join(repo_root, KD_CFG)!r}]\n'
        'model = dict(teacher=dict(random_init=True))\n'
        f'train_dataloader = {_data(digits_root, 64, batch_size=8)}\n'
        f'val_dataloader = {_data(digits_root, 128, batch_size=64)}\n'
        f'test_dataloader = {_data(digits_root, 128, batch_size=64)}\n'
        'train_cfg = dict(max_epochs=2, val_interval=2)\n')
    train_config = tmp / 'kd_probed.py'
    train_config.write_text(
        "_base_ = ['./kd.py']\n"
        "custom_imports = dict(imports=['buffer_probe_hook'], "
        'allow_failed_imports=False)\n'
        f'default_hooks = dict(probe=dict(type="BufferProbeHook", '
        f'out_dir={str(tmp)!r}))\n'
        "val_evaluator = [dict(type='Accuracy', topk=(1, )), "
        f"dict(type='DumpResults', out_file_path={str(tmp / 'val.pkl')!r})]\n")
    env = dict(os.environ, PORT=str(_free_port()), OMP_NUM_THREADS='1')
    env['PATH'] = osp.dirname(sys.executable) + os.pathsep + env['PATH']
    env['PYTHONPATH'] = os.pathsep.join(
        [osp.dirname(osp.abspath(__file__)), env.get('PYTHONPATH', '')])
    work_dir = tmp / 'work'
    proc = subprocess.run(
        ['bash', 'tools/dist_train.sh', str(train_config), '2', '--work-dir',
         str(work_dir)],
        cwd=repo_root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    scalars = []
    for root, _, files in os.walk(work_dir):
        if 'scalars.json' in files:
            with open(osp.join(root, 'scalars.json')) as f:
                scalars = [json.loads(line) for line in f]
    val_top1 = [e['accuracy/top1'] for e in scalars if 'accuracy/top1' in e]
    assert len(val_top1) == 1, scalars
    with open(tmp / 'val.pkl', 'rb') as f:
        val_preds = pickle.load(f)

    def probed(when, what='buffers'):
        return [
            torch.load(tmp / f'{when}_rank{rank}.pth', weights_only=True)[what]
            for rank in (0, 1)
        ]

    return dict(
        tmp=tmp, config=str(config), ckpt=str(work_dir / 'epoch_2.pth'),
        val_top1=val_top1[0], val_preds=val_preds,
        trained=probed('trained'), validated=probed('validated'),
        weights=probed('trained', 'params'))


def _scores(preds):
    """``sample_idx -> (pred_score, pred_label)``."""
    return {
        p['sample_idx']: (p['pred_score'], int(p['pred_label']))
        for p in preds
    }


def _test(tool_loader, run, config, ckpt, digits_root, name):
    out = str(run['tmp'] / f'{name}.pkl')
    metrics = tool_loader('tools/test.py').main([
        config, ckpt, '--work-dir', str(run['tmp'] / name), '--out', out,
        '--cfg-options', f'test_dataloader.dataset.data_root={digits_root}',
        'test_dataloader.dataset.indices=128', 'test_dataloader.batch_size=64',
        'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False'
    ])
    with open(out, 'rb') as f:
        return metrics['accuracy/top1'], _scores(pickle.load(f))


def _same_scores(val, test):
    assert sorted(val) == sorted(test) == list(range(128))
    for idx, (score, label) in val.items():
        assert label == test[idx][1], idx
        # Bit-equal where measured; rank 1's own (unsynced) statistics
        # move the scores of its samples by up to 1e-4.
        torch.testing.assert_close(score, test[idx][0], rtol=0, atol=1e-6)


def test_ranks_train_apart_and_validate_averaged(run):
    """Each rank's BatchNorm statistics follow its own batches (unsynced,
    the ranks would validate different students); validation and the
    checkpoint hold their average, bit for bit."""
    trained, validated = run['trained'], run['validated']
    checkpoint = torch.load(run['ckpt'], weights_only=False)['state_dict']
    stats = [k for k in trained[0] if k.endswith(('_mean', '_var'))]
    assert len(stats) == 2 * 20  # 20 BatchNorms
    assert all(not torch.equal(trained[0][k], trained[1][k]) for k in stats)
    # 4 steps (momentum 0.1) since the previous epoch's sync: 0.027.
    assert (trained[0][BN_STAT] - trained[1][BN_STAT]).abs().max() > 0.01
    for key in stats:
        average = (trained[0][key] + trained[1][key]) / 2
        assert torch.equal(validated[0][key], average), key
        assert torch.equal(validated[1][key], average), key
        assert torch.equal(checkpoint[key], average), key
    count = 'student.backbone.layer1.0.bn1.num_batches_tracked'
    assert validated[0][count].item() == validated[1][count].item() == 8
    assert checkpoint[count].item() == 8


def test_ranks_end_with_the_same_weights(run):
    """The ranks train on different batches (their BatchNorm statistics
    differ, above) but DDP averages the gradients: after the last step
    every parameter is the same on both ranks, bit for bit, and the
    checkpoint holds it."""
    weights = run['weights']
    checkpoint = torch.load(run['ckpt'], weights_only=False)['state_dict']
    # Every parameter of the checkpoint (which holds buffers besides).
    assert set(weights[0]) == set(weights[1]) == set(checkpoint) - set(
        run['trained'][0])
    for key, value in weights[0].items():
        assert torch.equal(value, weights[1][key]), key
        assert torch.equal(checkpoint[key], value), key


def test_checkpoint_scores_what_validation_scored(run, tool_loader,
                                                  digits_root):
    top1, scores = _test(tool_loader, run, run['config'], run['ckpt'],
                         digits_root, 'distiller')
    assert top1 == run['val_top1']
    _same_scores(_scores(run['val_preds']), scores)


def test_exported_student_scores_what_validation_scored(
        run, tool_loader, repo_root, digits_root):
    student = str(run['tmp'] / 'student.pth')
    tool_loader('tools/model_converters/extract_student.py').main(
        [run['ckpt'], student])
    top1, scores = _test(tool_loader, run,
                         osp.join(repo_root, STUDENT_CFG), student,
                         digits_root, 'student')
    assert top1 == run['val_top1']
    _same_scores(_scores(run['val_preds']), scores)
