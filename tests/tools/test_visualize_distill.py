"""tools/analysis/visualize_distill.py on tiny random ViTs: the maps it draws
are the class token's attention probabilities and the tapped features."""
import importlib.util
import os.path as osp

import cv2
import numpy as np
import pytest
import torch

from cls_kd.utils.inspection import build_config_models, load_config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _load_tool():
    path = osp.join(ROOT, 'tools', 'analysis', 'visualize_distill.py')
    spec = importlib.util.spec_from_file_location('visualize_distill', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = _load_tool()


def _vit(width, depth):
    return dict(
        type='ImageClassifier',
        backbone=dict(
            type='VisionTransformer',
            arch=dict(embed_dims=width, num_layers=depth, num_heads=2,
                      feedforward_channels=2 * width),
            img_size=32, patch_size=8),
        neck=None,
        head=dict(type='VisionTransformerClsHead', num_classes=10,
                  in_channels=width))


def _write_config(path, teacher_weights: str) -> str:
    """A digits distiller config: ViT 2x32 student, ViT 3x48 teacher with
    ``teacher_weights`` (a spec fragment)."""
    base = [osp.join(ROOT, 'configs', '_base_', f)
            for f in ('datasets/digits_bs64.py', 'default_runtime.py')]
    path.write_text(
        f'_base_ = {base!r}\n'
        f'model = dict(type="ClassificationDistiller",'
        f' student={_vit(32, 2)!r},'
        f' teacher=dict(config={_vit(48, 3)!r}, {teacher_weights}),'
        f' taps=dict(t_last=dict(model="teacher", path="backbone.ln1",'
        f' selector="patch_tokens")))\n')
    return str(path)


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """The config (random teacher), a distiller-style and an exported
    student checkpoint, two teacher checkpoints and three image files."""
    tmp = tmp_path_factory.mktemp('vis')
    config = _write_config(tmp / 'random.py', 'random_init=True')
    torch.manual_seed(0)
    distiller, models = build_config_models(load_config(config))
    student = models['student'].state_dict()
    torch.save({'state_dict': {f'student.{k}': v
                               for k, v in student.items()}},
               tmp / 'distiller.pth')
    torch.save({'state_dict': student}, tmp / 'student.pth')
    for seed in (1, 2):
        torch.manual_seed(seed)
        _, models = build_config_models(load_config(config))
        torch.save({'state_dict': models['teacher'].state_dict()},
                   tmp / f'teacher{seed}.pth')
    rng = np.random.default_rng(0)
    images = []
    for i in range(3):
        images.append(str(tmp / f'digit{i}.png'))
        cv2.imwrite(images[-1], rng.integers(0, 255, (8, 8, 3), np.uint8))
    return tmp, config, images


def _cls_probs(attn, x):
    """Row 0 of softmax(q k^T / sqrt(d)) of an mmpretrain
    MultiheadAttention on input ``x``, written out independently."""
    B, N, C = x.shape
    qkv = attn.qkv(x).reshape(B, N, 3, attn.num_heads, -1)
    q, k = qkv[:, :, 0].transpose(1, 2), qkv[:, :, 1].transpose(1, 2)
    logits = q @ k.transpose(-2, -1) / q.shape[-1]**0.5
    return logits.softmax(-1)[:, :, 0]


def test_attention_and_feature_maps(setup):
    tmp, config, images = setup
    out = tool.main([
        config, '--student-ckpt', str(tmp / 'distiller.pth'), '--images',
        *images, '--out-dir', str(tmp / 'out'), '--attn',
        'student:backbone.layers.1.attn,teacher:backbone.layers.2.attn',
        '--taps', 't_last,student:backbone.layers.0', '--heads', 'all',
        '--feature', 'mean'
    ])
    names = [osp.basename(f) for f in out['files']]
    assert names == ['00_digit0.png', '01_digit1.png', '02_digit2.png',
                     'overview.png']
    for f in out['files']:
        with open(f, 'rb') as png:
            assert png.read(8) == b'\x89PNG\r\n\x1a\n'
    maps = out['maps']
    for label in ('attn student:backbone.layers.1.attn',
                  'attn teacher:backbone.layers.2.attn'):
        attn = maps[label]
        assert attn.maps.shape == (3, 2, 4, 4) and attn.prefix == 1
        # Patch entries = the row without the class token's own entry.
        np.testing.assert_allclose(attn.maps.sum((-1, -2)),
                                   1 - attn.cls_row[..., 0], atol=1e-6)
    # The student's maps against probabilities computed here from the
    # checkpoint's weights and the block's input.
    _, models = build_config_models(load_config(config))
    student = models['student']
    student.load_state_dict(torch.load(tmp / 'student.pth')['state_dict'])
    seen = {}
    block = student.backbone.layers[1]
    handle = block.attn.register_forward_hook(
        lambda m, args, output: seen.setdefault('x', args[0]))
    with torch.no_grad():
        student(out['inputs'], mode='tensor')
        expected = _cls_probs(block.attn, seen['x'])
    handle.remove()
    np.testing.assert_allclose(
        maps['attn student:backbone.layers.1.attn'].maps,
        expected[..., 1:].reshape(3, 2, 4, 4).numpy(), atol=1e-5)
    assert maps['t_last'].shape == (3, 4, 4)
    # Tokens of block 0 without the class token, channel mean on the grid
    # (patch embedding + class token + position embedding, as the backbone).
    with torch.no_grad():
        bb = student.backbone
        x = bb.patch_embed(out['inputs'])[0]
        x = torch.cat([bb.cls_token.expand(3, -1, -1), x], 1) + bb.pos_embed
        tokens0 = bb.layers[0](x)
    np.testing.assert_allclose(
        maps['student:backbone.layers.0'],
        tokens0[:, 1:].mean(-1).reshape(3, 4, 4).numpy(), atol=1e-5)


def test_checkpoint_formats_and_teacher_ckpt(setup, digits_root):
    """An exported student loads like the distiller checkpoint; the
    teacher comes from --teacher-ckpt; images from the config's test set."""
    tmp, _, _ = setup
    config = _write_config(tmp / 'no_ckpt.py', 'checkpoint=None')
    runs = {}
    for student, teacher in [('distiller', 1), ('student', 1),
                             ('student', 2)]:
        runs[student, teacher] = tool.main([
            config, '--student-ckpt', str(tmp / f'{student}.pth'),
            '--teacher-ckpt', str(tmp / f'teacher{teacher}.pth'), '--num',
            '2', '--out-dir', str(tmp / f'{student}{teacher}'), '--taps',
            't_last', '--cfg-options',
            f'test_dataloader.dataset.data_root={digits_root}'
        ])['maps']
    s_attn = 'attn student:backbone.layers.1.attn'  # the default: the last
    t_attn = 'attn teacher:backbone.layers.2.attn'
    a, b, c = runs.values()
    np.testing.assert_array_equal(a[s_attn].maps, b[s_attn].maps)
    np.testing.assert_array_equal(a[t_attn].maps, b[t_attn].maps)
    assert not np.allclose(b[t_attn].maps, c[t_attn].maps)
    assert not np.allclose(b['t_last'], c['t_last'])
    np.testing.assert_array_equal(b[s_attn].maps, c[s_attn].maps)


def test_errors(setup):
    tmp, config, images = setup
    common = [config, '--student-ckpt', str(tmp / 'distiller.pth'),
              '--images', *images, '--out-dir', str(tmp / 'err')]
    with pytest.raises(SystemExit, match=r"no module 'backbone.layer.1.attn'"
                       r".*'backbone.layers.1.attn'"):
        tool.main(common + ['--attn', 'student:backbone.layer.1.attn'])
    with pytest.raises(SystemExit, match=r"MODEL one of \['student', "
                       r"'teacher'\]"):
        tool.main(common + ['--attn', 'teachr:backbone.layers.1.attn'])
    with pytest.raises(SystemExit, match=r"'t_lst' is neither.*\['t_last'\]"):
        tool.main(common + ['--taps', 't_lst'])
    # The teacher's weights (width 48) as the student's (width 32).
    wrong = [config, '--student-ckpt', str(tmp / 'teacher1.pth')]
    with pytest.raises(SystemExit, match='--student-ckpt: .*other shapes'):
        tool.main(wrong + common[3:])
    no_ckpt = _write_config(tmp / 'none.py', 'checkpoint=None')
    with pytest.raises(SystemExit, match='pass --teacher-ckpt teacher=T.pth'):
        tool.main([no_ckpt] + common[1:])
