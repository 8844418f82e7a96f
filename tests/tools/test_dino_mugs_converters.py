"""tools/model_converters/dino_to_mmpretrain.py on state dicts laid out as
DINO's and Mugs' public checkpoints, checked against a forward written from
the DINO ViT (facebookresearch/dino ``vision_transformer.py``)."""
import argparse
import importlib.util
import os.path as osp
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from mmpretrain.models import ImageClassifier, VisionTransformer

from cls_kd.models.taps.attention import attention_probs
from cls_kd.utils import load_model_weights

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SMALL = dict(embed_dims=48, depth=2, heads=3, patch=8, img=32)


def _converter():
    path = osp.join(ROOT, 'tools', 'model_converters', 'dino_to_mmpretrain.py')
    spec = importlib.util.spec_from_file_location('dino_to_mmpretrain', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


conv = _converter()


def _tensor(shape, gen, device, scale=0.2, offset=0.):
    if device == 'meta':
        return torch.empty(shape, device='meta')
    return offset + scale * torch.randn(shape, generator=gen)


def _block(prefix, dim, gen, device):
    """One DINO/Mugs ``Block`` (mlp_ratio 4, qkv with bias)."""
    shapes = dict(
        norm1=(dim, ), qkv=(3 * dim, dim), proj=(dim, dim), norm2=(dim, ),
        fc1=(4 * dim, dim), fc2=(dim, 4 * dim))
    module = dict(
        norm1='norm1', qkv='attn.qkv', proj='attn.proj', norm2='norm2',
        fc1='mlp.fc1', fc2='mlp.fc2')
    state = OrderedDict()
    for name, shape in shapes.items():
        norm = name.startswith('norm')
        state[f'{prefix}{module[name]}.weight'] = _tensor(
            shape, gen, device, 0.1 if norm else 0.2, 1. if norm else 0.)
        state[f'{prefix}{module[name]}.bias'] = _tensor(
            shape[:1], gen, device, 0.1)
    return state


def dino_vit(embed_dims, depth, patch, img, seed=0, device='cpu'):
    """A backbone state dict with the keys, order and shapes of DINO's
    ``vit_small``/``vit_base`` (e.g. ``dino_deitsmall8_pretrain.pth``)."""
    gen = torch.Generator().manual_seed(seed)
    grid = img // patch
    state = OrderedDict(
        cls_token=_tensor((1, 1, embed_dims), gen, device),
        pos_embed=_tensor((1, 1 + grid * grid, embed_dims), gen, device))
    state['patch_embed.proj.weight'] = _tensor(
        (embed_dims, 3, patch, patch), gen, device)
    state['patch_embed.proj.bias'] = _tensor((embed_dims, ), gen, device)
    for i in range(depth):
        state.update(_block(f'blocks.{i}.', embed_dims, gen, device))
    state['norm.weight'] = _tensor((embed_dims, ), gen, device, 0.1, 1.)
    state['norm.bias'] = _tensor((embed_dims, ), gen, device, 0.1)
    return state


def mugs_network(backbone, student, device='cpu'):
    """A Mugs ``Mugs_Wrapper`` state dict (sail-sg/mugs ``src/model.py``):
    the backbone with its relation block, instance / local-group heads (a
    bias-free 3-layer projector, plus a predictor for the student) and the
    group head (projector + weight-normed last layer)."""
    dim, gen = backbone['cls_token'].shape[-1], torch.Generator()
    hidden, out = 32, 16  # 2048 / 256 / 65536 in the released models
    state = OrderedDict(('backbone.' + k, v) for k, v in backbone.items())
    state.update(_block('backbone.relation_blocks.0.', dim, gen, device))
    for head in ('instance_head', 'local_group_head'):
        for i, shape in enumerate([(hidden, dim), (hidden, hidden),
                                   (out, hidden)]):
            state[f'{head}.projector.{2 * i}.weight'] = _tensor(
                shape, gen, device)
        if student:
            state[f'{head}.predictor.0.weight'] = _tensor(
                (hidden, out), gen, device)
            state[f'{head}.predictor.2.weight'] = _tensor(
                (out, hidden), gen, device)
    for i, shape in enumerate([(hidden, dim), (hidden, hidden),
                               (out, hidden)]):
        state[f'group_head.projector.{2 * i}.weight'] = _tensor(
            shape, gen, device)
        state[f'group_head.projector.{2 * i}.bias'] = _tensor(
            shape[:1], gen, device)
    state['group_head.last_layer.weight_g'] = _tensor((64, 1), gen, device)
    state['group_head.last_layer.weight_v'] = _tensor((64, out), gen, device)
    if student:  # DDP around the student only (no BatchNorm in a ViT)
        state = OrderedDict(('module.' + k, v) for k, v in state.items())
    return state


def dino_full_checkpoint(teacher, student):
    """DINO's ``checkpoint.pth`` (main_dino.py): MultiCropWrapper state
    dicts, the student inside DDP, with training state around them."""

    def wrapper(backbone, ddp):
        state = OrderedDict(('backbone.' + k, v) for k, v in backbone.items())
        state['head.mlp.0.weight'] = torch.zeros(32, 48)
        state['head.mlp.0.bias'] = torch.zeros(32)
        state['head.last_layer.weight_g'] = torch.ones(64, 1)
        state['head.last_layer.weight_v'] = torch.zeros(64, 32)
        prefix = 'module.' if ddp else ''
        return OrderedDict((prefix + k, v) for k, v in state.items())

    return dict(
        student=wrapper(student, ddp=True),
        teacher=wrapper(teacher, ddp=False),
        optimizer=dict(state={}, param_groups=[]),
        epoch=800,
        args=argparse.Namespace(arch='vit_small', patch_size=8),
        dino_loss=dict(center=torch.zeros(1, 64)))


def dino_reference(state, x, num_heads, eps=1e-6):
    """DINO's ``VisionTransformer.forward`` (pre-norm blocks, final norm,
    CLS output) and the last block's CLS attention row (B, heads, N)."""
    B = x.shape[0]
    x = F.conv2d(x, state['patch_embed.proj.weight'],
                 state['patch_embed.proj.bias'],
                 stride=state['patch_embed.proj.weight'].shape[-1])
    x = x.flatten(2).transpose(1, 2)  # B, N-1, C
    x = torch.cat([state['cls_token'].expand(B, -1, -1), x], dim=1)
    x = x + state['pos_embed']
    N, C = x.shape[1:]
    depth = len({k.split('.')[1] for k in state if k.startswith('blocks.')})
    for i in range(depth):
        p = {k[len(f'blocks.{i}.'):]: v for k, v in state.items()
             if k.startswith(f'blocks.{i}.')}
        h = F.layer_norm(x, (C, ), p['norm1.weight'], p['norm1.bias'], eps)
        qkv = F.linear(h, p['attn.qkv.weight'], p['attn.qkv.bias'])
        q, k, v = qkv.reshape(B, N, 3, num_heads, -1).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) *
                (C // num_heads)**-0.5).softmax(-1)  # B, heads, N, N
        y = (attn @ v).transpose(1, 2).reshape(B, N, C)
        x = x + F.linear(y, p['attn.proj.weight'], p['attn.proj.bias'])
        h = F.layer_norm(x, (C, ), p['norm2.weight'], p['norm2.bias'], eps)
        h = F.gelu(F.linear(h, p['mlp.fc1.weight'], p['mlp.fc1.bias']))
        x = x + F.linear(h, p['mlp.fc2.weight'], p['mlp.fc2.bias'])
    x = F.layer_norm(x, (C, ), state['norm.weight'], state['norm.bias'], eps)
    return x[:, 0], attn[:, :, 0]


def mmpretrain_vit(embed_dims, depth, heads, patch, img, device='cpu'):
    with torch.device(device):
        return VisionTransformer(
            arch=dict(embed_dims=embed_dims, num_layers=depth,
                      num_heads=heads, feedforward_channels=4 * embed_dims),
            patch_size=patch, img_size=img, qkv_bias=True,
            norm_cfg=dict(type='LN', eps=1e-6), out_type='cls_token')


@pytest.mark.parametrize('name, embed_dims, heads, patch, mugs', [
    ('DINO ViT-S/8', 384, 6, 8, False),
    ('Mugs ViT-B/16', 768, 12, 16, True),
    ('Mugs ViT-S/16', 384, 6, 16, True),
])
def test_released_layouts_fit_mmpretrain_strictly(name, embed_dims, heads,
                                                  patch, mugs):
    backbone = dino_vit(embed_dims, 12, patch, 224, device='meta')
    assert len(backbone) == 4 + 12 * 12 + 2
    state = mugs_network(backbone, student=False, device='meta') \
        if mugs else backbone
    converted, dropped = conv.convert_keys(state)
    arch = conv.infer_arch(converted)
    assert arch == dict(
        arch=dict(embed_dims=embed_dims, num_layers=12, num_heads=heads,
                  feedforward_channels=4 * embed_dims),
        patch_size=patch, img_size=224, qkv_bias=True)
    model = mmpretrain_vit(embed_dims, 12, heads, patch, 224, device='meta')
    expected = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in converted.items()} == expected
    model.load_state_dict(converted, strict=True)
    if mugs:
        assert dropped == dict(relation_blocks=12, instance_head=3,
                               local_group_head=3, group_head=8)
    else:
        assert not dropped


def test_converted_model_matches_dino_forward_and_attention():
    backbone = dino_vit(SMALL['embed_dims'], SMALL['depth'], SMALL['patch'],
                        SMALL['img'])
    converted, _ = conv.convert_keys(backbone)
    model = mmpretrain_vit(**SMALL)
    model.load_state_dict(converted, strict=True)
    model.eval()  # BaseBackbone.train returns None: no chaining
    calls = []
    model.layers[-1].attn.register_forward_hook(
        lambda m, args, kwargs, out: calls.append((args, kwargs)),
        with_kwargs=True)
    x = torch.randn(2, 3, SMALL['img'], SMALL['img'],
                    generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        (cls_token, ) = model(x)
        expected_cls, expected_attn = dino_reference(backbone, x,
                                                     SMALL['heads'])
        cls_attn = attention_probs(model.layers[-1].attn, *calls[0],
                                   query='cls')
    assert cls_token.shape == (2, SMALL['embed_dims'])
    torch.testing.assert_close(cls_token, expected_cls, atol=1e-5, rtol=0)
    assert cls_attn.shape == (2, SMALL['heads'], 1 + 4 * 4)
    torch.testing.assert_close(cls_attn, expected_attn, atol=1e-6, rtol=0)
    # Random weights make peaked attention: the rows are not uniform.
    assert expected_attn.max() > 2 / expected_attn.shape[-1]


def test_dino_full_checkpoint_teacher_by_default(tmp_path, capsys):
    teacher = dino_vit(48, 2, 8, 32, seed=0)
    student = dino_vit(48, 2, 8, 32, seed=1)
    src = str(tmp_path / 'dino_full.pth')
    torch.save(dino_full_checkpoint(teacher, student), src)
    expected = {
        name: {'backbone.' + k: v
               for k, v in conv.convert_keys(net)[0].items()}
        for name, net in (('teacher', teacher), ('student', student))
    }
    for model in (None, 'student'):
        dst = str(tmp_path / f'{model}.pth')
        meta = conv.convert(src, dst, model=model, num_heads=3)
        saved = torch.load(dst, weights_only=True)
        name = model or 'teacher'
        assert meta['network'] == name and saved['meta']['network'] == name
        assert meta['dropped'] == dict(head=4)
        assert list(saved['state_dict']) == list(expected[name])
        for key, value in expected[name].items():
            assert torch.equal(saved['state_dict'][key], value), key
    assert 'Dropped 4 non-backbone tensor(s): head. (4, DINO head)' in \
        capsys.readouterr().out


def test_mugs_full_checkpoint_drops_its_extras(tmp_path, capsys):
    backbone = dino_vit(48, 2, 8, 32)
    checkpoint = dict(
        student=mugs_network(backbone, student=True),
        teacher=mugs_network(backbone, student=False),
        student_mem={'block.queue_q': torch.zeros(8, 48)},
        teacher_mem={'block.queue_q': torch.zeros(8, 48)},
        epoch=400)
    src = str(tmp_path / 'mugs_full.pth')
    torch.save(checkpoint, src)
    meta = conv.convert(src, str(tmp_path / 'out.pth'), model='student',
                        prefix='', num_heads=3)
    assert meta['dropped'] == dict(relation_blocks=12, instance_head=5,
                                   local_group_head=5, group_head=8)
    out = capsys.readouterr().out
    for prefix in ('relation_blocks.', 'instance_head.', 'local_group_head.',
                   'group_head.'):
        assert prefix in out
    saved = torch.load(str(tmp_path / 'out.pth'), weights_only=True)
    expected, _ = conv.convert_keys(backbone)
    assert saved['state_dict'].keys() == expected.keys()
    assert not any('relation' in k for k in saved['state_dict'])
    # Mugs' backbone extraction keeps relation_blocks under 'state_dict'.
    extracted = {'state_dict': OrderedDict(
        (k[len('backbone.'):], v) for k, v in checkpoint['teacher'].items()
        if k.startswith('backbone.'))}
    converted, dropped = conv.convert_keys(conv.select_network(extracted)[0])
    assert converted.keys() == expected.keys()
    assert dropped == dict(relation_blocks=12)


def test_wrong_network_or_layout_is_an_error(tmp_path):
    backbone = dino_vit(48, 2, 8, 32)
    with pytest.raises(KeyError, match='holds no teacher/student'):
        conv.select_network(backbone, 'student')
    with pytest.raises(KeyError, match="only \\['teacher'\\]"):
        conv.select_network(dict(teacher=backbone), 'student')
    with pytest.raises(KeyError, match="match no DINO/Mugs ViT key: "
                       "\\['blocks.0.attn.q_bias'\\]"):
        conv.convert_keys({**backbone, 'blocks.0.attn.q_bias': None})
    converted, _ = conv.convert_keys(backbone)
    with pytest.raises(ValueError, match='Width 48 .* give --num-heads'):
        conv.infer_arch(converted)
    with pytest.raises(ValueError, match='5 heads do not divide the width'):
        conv.infer_arch(converted, num_heads=5)


def test_cli_output_loads_strictly_into_teachers(tmp_path, capsys):
    backbone = dino_vit(48, 2, 8, 32)
    src, dst = str(tmp_path / 'dino.pth'), str(tmp_path / 'out' / 'vit.pth')
    torch.save(backbone, src)
    conv.main([src, dst, '--num-heads', '3'])
    out = capsys.readouterr().out
    assert "keys under 'backbone.'" in out
    assert "arch={'embed_dims': 48, 'num_layers': 2, 'num_heads': 3" in out
    expected, _ = conv.convert_keys(backbone)
    vit = mmpretrain_vit(**SMALL)
    classifier = ImageClassifier(backbone=dict(
        type='VisionTransformer',
        arch=dict(embed_dims=48, num_layers=2, num_heads=3,
                  feedforward_channels=192),
        patch_size=8, img_size=32))
    for model, prefix in ((vit, ''), (classifier, 'backbone.')):
        report = load_model_weights(model, dst)
        assert report == dict(missing_keys=[], unexpected_keys=[])
        state = model.state_dict()
        for key, value in expected.items():
            assert torch.equal(state[prefix + key], value), key
