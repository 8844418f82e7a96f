"""tools/analysis/visualize_distill.py on tiny random ViTs: the maps it draws
are the class token's attention probabilities and the tapped features, each
row on one colour scale, at the grid's own resolution; ``--loss`` draws what
the distiller feeds that loss."""
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmpretrain.structures import DataSample

from cls_kd.apis import build_config_models, load_config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
ATTN = dict(type='attn_probs', query='cls')


@pytest.fixture(scope='module')
def tool(tool_loader):
    return tool_loader('tools/analysis/visualize_distill.py')


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
    ``teacher_weights`` (a spec fragment), a class token, a generation, a
    logit and an attention loss."""
    base = [osp.join(ROOT, 'configs', '_base_', f)
            for f in ('datasets/digits_bs64.py', 'default_runtime.py')]
    taps = dict(
        t_last=dict(model='teacher', path='backbone.ln1',
                    selector='patch_tokens'),
        s_last=dict(path='backbone.ln1', selector='patch_tokens'),
        s_cls=dict(path='backbone.ln1', selector='cls_token'),
        t_cls=dict(model='teacher', path='backbone.ln1',
                   selector='cls_token'),
        s_attn=dict(path='backbone.layers.1.attn', selector=ATTN),
        t_attn=dict(model='teacher', path='backbone.layers.2.attn',
                    selector=ATTN))
    connectors = dict(
        proj=dict(type='LinearConnector', in_channels=32, out_channels=48),
        gen=dict(type='ViTKDGenerator', in_channels=32, out_channels=48))
    losses = dict(
        loss_cls_mse=dict(type='FeatureMSELoss', inputs=dict(
            preds='proj(s_cls)', targets='t_cls')),
        loss_gen=dict(type='ViTKDGenerationLoss', beta=1.0, inputs=dict(
            preds='gen(s_last).preds', targets='t_last',
            mask='gen(s_last).mask')),
        loss_kd=dict(type='KDLoss', inputs=dict(
            logits_s='logits_s', logits_t='logits_t')),
        loss_attn=dict(type='AttnDistillAttentionLoss', inputs=dict(
            attn_s='s_attn', attn_t='t_attn')))
    path.write_text(
        f'_base_ = {base!r}\n'
        f'model = dict(type="ClassificationDistiller",'
        f' student={_vit(32, 2)!r},'
        f' teacher=dict(config={_vit(48, 3)!r}, {teacher_weights}),'
        f' taps={taps!r}, connectors={connectors!r}, losses={losses!r})\n')
    return str(path)


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """The config (random teacher); a training checkpoint (student and
    connectors), one with the student only and an exported student; two
    teacher checkpoints; three image files."""
    tmp = tmp_path_factory.mktemp('vis')
    config = _write_config(tmp / 'random.py', 'random_init=True')
    torch.manual_seed(0)
    distiller, models = build_config_models(load_config(config))
    for p in distiller.connectors.parameters():  # not the zero init
        p.data.normal_()
    torch.save({'state_dict': distiller.state_dict()}, tmp / 'full.pth')
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


def _axes(figure, gid):
    """The axes with this gid, one per row."""
    found = [ax for ax in figure.axes if ax.get_gid() == gid]
    assert found, [ax.get_gid() for ax in figure.axes]
    return found


S_ATTN = 'attn student:backbone.layers.1.attn'
T_ATTN = 'attn teacher:backbone.layers.2.attn'


def test_attention_and_feature_maps(tool, setup):
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
    for label in (S_ATTN, T_ATTN):
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
    np.testing.assert_allclose(maps[S_ATTN].maps,
                               expected[..., 1:].reshape(3, 2, 4, 4).numpy(),
                               atol=1e-5)
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


def test_one_scale_per_row_at_native_resolution(tool, setup):
    """Overview row b: both attention panels on [0, the largest of their
    probabilities], both feature panels on [-m, m]; each panel's array is
    the 4x4 map itself (nearest, no upsampling) and says so in its title;
    ``--resolution smooth`` draws an upsampled array instead."""
    tmp, config, images = setup
    common = [config, '--student-ckpt', str(tmp / 'distiller.pth'),
              '--images', *images[:2], '--taps', 't_last,s_last']
    out = tool.main(common + ['--out-dir', str(tmp / 'native')])
    maps = out['maps']
    overview = out['figures'][out['files'][-1]]
    rows = {}
    for ax in overview.axes:
        rows.setdefault(ax.get_gid(), []).append(ax)
    for b in range(2):
        s_map, t_map = (maps[k].maps[b].mean(0) for k in (S_ATTN, T_ATTN))
        s_ax, t_ax = rows[S_ATTN][b], rows[T_ATTN][b]
        top = max(s_map.max(), t_map.max())
        assert s_ax.images[-1].get_clim() == t_ax.images[-1].get_clim() \
            == pytest.approx((0, top))
        np.testing.assert_array_equal(s_ax.images[-1].get_array(), s_map)
        np.testing.assert_array_equal(t_ax.images[-1].get_array(), t_map)
        assert '4×4 tokens' in s_ax.get_title()
        m = max(np.abs(maps['t_last'][b]).max(),
                np.abs(maps['s_last'][b]).max())
        s_feat, t_feat = rows['s_last'][b], rows['t_last'][b]
        assert s_feat.images[-1].get_clim() == \
            t_feat.images[-1].get_clim() == pytest.approx((-m, m))
        np.testing.assert_array_equal(t_feat.images[-1].get_array(),
                                      maps['t_last'][b])
    # Per-row scales: the colour bars' ranges follow each row's maximum.
    assert rows[S_ATTN][0].images[-1].get_clim() != \
        rows[S_ATTN][1].images[-1].get_clim()
    smooth = tool.main(common + ['--out-dir', str(tmp / 'smooth'),
                                 '--resolution', 'smooth'])
    ax = _axes(smooth['figures'][smooth['files'][0]], S_ATTN)[0]
    assert ax.images[-1].get_array().shape == (32, 32)  # the image's size


def _direct(distiller, inputs):
    """Student and teacher taps and logits computed here, without taps."""
    with torch.no_grad():
        s_tokens = distiller.student.backbone(inputs)[-1]
        teacher = distiller.teachers['teacher']
        t_tokens = teacher.backbone(inputs)[-1]
    return s_tokens, t_tokens


def _built(config, tmp):
    distiller, _ = build_config_models(load_config(config),
                                       dict(teacher=str(tmp / 'teacher1.pth')))
    state = torch.load(tmp / 'full.pth')['state_dict']
    distiller.load_state_dict(state)
    return distiller


def test_loss_sides_are_what_the_distiller_feeds(tool, setup, digits_root):
    """``--loss``: the values drawn are the connector outputs and taps the
    distiller's step computes, and the loss value is the step's."""
    tmp, config, _ = setup
    common = [config, '--student-ckpt', str(tmp / 'full.pth'), '--num', '3',
              '--teacher-ckpt', str(tmp / 'teacher1.pth'), '--cfg-options',
              f'test_dataloader.dataset.data_root={digits_root}']
    cls = tool.main(common + ['--loss', 'loss_cls_mse', '--out-dir',
                              str(tmp / 'cls')])
    gen = tool.main(common + ['--loss', 'loss_gen', '--out-dir',
                              str(tmp / 'gen'), '--seed', '3'])
    inputs = cls['inputs']
    distiller = _built(config, tmp)
    # The backbone's class token output (after its final norm), projected.
    s_tokens, t_tokens = _direct(distiller, inputs)
    found = cls['loss']
    assert list(found.values) == ['preds', 'targets']
    with torch.no_grad():
        proj = distiller.connectors['proj'](s_tokens)
    torch.testing.assert_close(found.values['preds'], proj)
    torch.testing.assert_close(found.values['targets'], t_tokens)
    np.testing.assert_allclose(
        float(found.value),
        ((proj - t_tokens)**2).sum() / 3, rtol=1e-5)  # sum per sample
    # ViTKD's generation: the generator's output and mask for seed 3.
    samples = [DataSample().set_gt_label(0) for _ in range(3)]
    torch.manual_seed(3)
    with torch.no_grad():
        step = distiller.loss(gen['inputs'], samples)['loss_gen']
    assert float(gen['loss'].value) == pytest.approx(float(step), rel=1e-6)
    torch.manual_seed(3)
    with torch.no_grad():
        out = distiller.connectors['gen'](
            distiller.student.backbone.ln1.__call__(
                _last_block(distiller.student, inputs))[:, 1:])
    torch.testing.assert_close(gen['loss'].values['preds'], out['preds'])
    torch.testing.assert_close(gen['loss'].values['mask'], out['mask'])
    figure = gen['figures'][gen['files'][0]]
    for a, b, mask in zip(_axes(figure, 'preds'), _axes(figure, 'targets'),
                          _axes(figure, 'mask')):
        assert a.images[-1].get_clim() == b.images[-1].get_clim()
        assert mask.images[-1].get_array().sum() == 8  # λ = 0.5 of 16
    assert 'loss_gen (ViTKDGenerationLoss) = ' in figure._suptitle.get_text()


def _last_block(student, inputs):
    """The student's tokens after its last block, before the final norm."""
    bb = student.backbone
    with torch.no_grad():
        x = bb.patch_embed(inputs)[0]
        x = torch.cat([bb.cls_token.expand(len(x), -1, -1), x], 1)
        x = x + bb.pos_embed
        for layer in bb.layers:
            x = layer(x)
    return x


def test_loss_vectors_and_attention(tool, setup, digits_root, capsys):
    """Logits are drawn as bars (both sides in one axes), attention rows as
    maps on one probability scale; the printed value is the step's."""
    tmp, config, _ = setup
    common = [config, '--student-ckpt', str(tmp / 'full.pth'), '--num', '2',
              '--cfg-options',
              f'test_dataloader.dataset.data_root={digits_root}']
    kd = tool.main(common + ['--loss', 'loss_kd', '--out-dir',
                             str(tmp / 'kd')])
    figure = kd['figures'][kd['files'][0]]
    sides = _axes(figure, 'sides')
    assert len(sides) == 2 and len(sides[0].patches) == 20  # 2 x 10 bars
    logits_s = kd['loss'].values['logits_s']
    heights = [p.get_height() for p in sides[1].patches[:10]]
    np.testing.assert_allclose(heights, logits_s[1].numpy(), rtol=1e-6)
    assert f'= {float(kd["loss"].value):.4g} on these 2 images' in \
        capsys.readouterr().out
    attn = tool.main(common + ['--loss', 'loss_attn', '--out-dir',
                               str(tmp / 'attn')])
    figure = attn['figures'][attn['files'][0]]
    s_ax, t_ax = _axes(figure, 'attn_s')[0], _axes(figure, 'attn_t')[0]
    assert s_ax.images[-1].get_clim() == t_ax.images[-1].get_clim()
    row = attn['loss'].values['attn_s'][0]  # (heads, 1 + 16)
    np.testing.assert_allclose(s_ax.images[-1].get_array(),
                               row[:, 1:].mean(0).reshape(4, 4).numpy(),
                               rtol=1e-6)


def test_checkpoint_formats_and_teacher_ckpt(tool, setup, digits_root):
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
    a, b, c = runs.values()
    np.testing.assert_array_equal(a[S_ATTN].maps, b[S_ATTN].maps)
    np.testing.assert_array_equal(a[T_ATTN].maps, b[T_ATTN].maps)
    assert not np.allclose(b[T_ATTN].maps, c[T_ATTN].maps)
    assert not np.allclose(b['t_last'], c['t_last'])
    np.testing.assert_array_equal(b[S_ATTN].maps, c[S_ATTN].maps)


def test_errors(tool, setup):
    tmp, config, images = setup
    common = [config, '--student-ckpt', str(tmp / 'distiller.pth'),
              '--images', *images, '--out-dir', str(tmp / 'err')]
    with pytest.raises(SystemExit, match=r"no module 'backbone.layer.1.attn'"
                       r".*'backbone.layers.1.attn'"):
        tool.main(common + ['--attn', 'student:backbone.layer.1.attn'])
    with pytest.raises(SystemExit, match=r"MODEL one of \['student', "
                       r"'teacher'\]"):
        tool.main(common + ['--attn', 'teachr:backbone.layers.1.attn'])
    with pytest.raises(SystemExit, match=r"'t_lst' is neither.*closest: "
                       r"\['t_last', 't_cls', 's_last'\]"):
        tool.main(common + ['--taps', 't_lst'])
    with pytest.raises(SystemExit, match=r"--loss: no loss term 'loss_gne' "
                       r"in model.losses; closest: \['loss_gen'\], terms: "
                       r"\['loss_attn', 'loss_cls_mse', 'loss_gen', "
                       r"'loss_kd'\]"):
        tool.main(common + ['--loss', 'loss_gne'])
    # The connectors' weights are not in a student-only checkpoint.
    with pytest.raises(SystemExit, match=r"--loss loss_gen reads connectors "
                       r"\['gen'\], whose weights are not in .*distiller.pth"
                       r" \(an exported student\?\)"):
        tool.main(common + ['--loss', 'loss_gen'])
    with pytest.raises(SystemExit, match="--loss draws the loss's own "
                       "inputs: leave out --attn and --taps"):
        tool.main(common + ['--loss', 'loss_gen', '--taps', 't_last'])
    # The teacher's weights (width 48) as the student's (width 32).
    wrong = [config, '--student-ckpt', str(tmp / 'teacher1.pth')]
    with pytest.raises(SystemExit, match='--student-ckpt: .*other shapes'):
        tool.main(wrong + common[3:])
    no_ckpt = _write_config(tmp / 'none.py', 'checkpoint=None')
    with pytest.raises(SystemExit, match='pass --teacher-ckpt teacher=T.pth'):
        tool.main([no_ckpt] + common[1:])
