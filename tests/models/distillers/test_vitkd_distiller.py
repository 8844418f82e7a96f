"""ViTKD wired through the distiller: taps, per-block projections, the
generator and both loss terms, on tiny models of different widths and
depths (a DeiT III teacher with 4 blocks, a ViT student with 2)."""
import pytest
import torch
from mmpretrain.structures import DataSample

import cls_kd
from cls_kd.models.distillers import DistillerConfigError
from cls_kd.registry import MODELS

cls_kd.register_all_modules()

S_DIM, T_DIM = 16, 24


def classifier(backbone_type, width, depth, patch_size=8):
    return dict(
        type='ImageClassifier',
        backbone=dict(
            type=backbone_type,
            arch=dict(embed_dims=width, num_layers=depth, num_heads=2,
                      feedforward_channels=2 * width),
            img_size=32,
            patch_size=patch_size),
        neck=None,
        head=dict(type='VisionTransformerClsHead', num_classes=10,
                  in_channels=width))


def vitkd(blocks=(0, 1), teacher_patch=8, resize=False, **extra):
    taps, connectors = {}, {}
    for model, prefix in (('student', 's'), ('teacher', 't')):
        for i in blocks:
            taps[f'{prefix}_block{i}'] = dict(
                model=model, path=f'backbone.layers.{i}',
                selector='patch_tokens')
        taps[f'{prefix}_last'] = dict(model=model, path='backbone.ln1',
                                      selector='patch_tokens')
    for i in blocks:
        connectors[f'mimic{i}'] = dict(type='LinearConnector',
                                       in_channels=S_DIM, out_channels=T_DIM)
    connectors['gen'] = dict(type='ViTKDGenerator', in_channels=S_DIM,
                             out_channels=T_DIM)
    t = (lambda name: f'resize({name}, s_last)') if resize else str
    if resize:
        connectors['resize'] = dict(type='TokenGridResize')
    torch.manual_seed(0)
    return MODELS.build(dict(
        type='ClassificationDistiller',
        student=classifier('VisionTransformer', S_DIM, 2),
        teacher=dict(config=classifier('FixedDeiT3', T_DIM, 4,
                                       teacher_patch), checkpoint=None,
                     random_init=True),
        data_preprocessor=dict(num_classes=10, mean=[0.] * 3, std=[1.] * 3),
        taps=taps,
        connectors=connectors,
        losses=dict(
            loss_vitkd_mimic=dict(
                type='ViTKDMimicLoss',
                inputs=dict(preds=[f'mimic{i}(s_block{i})' for i in blocks],
                            targets=[t(f't_block{i}') for i in blocks])),
            loss_vitkd_gen=dict(
                type='ViTKDGenerationLoss',
                inputs=dict(preds='gen(s_last).preds', targets=t('t_last'),
                            mask='gen(s_last).mask'))),
        **extra))


def batch():
    torch.manual_seed(1)
    return torch.randn(3, 3, 32, 32), [
        DataSample().set_gt_label(k) for k in (1, 4, 9)
    ]


def block_outputs(model, paths, inputs):
    """Outputs of the given modules in one forward, by hooks of our own."""
    out, handles = {}, []
    for path in paths:
        module = model.get_submodule(path)
        handles.append(module.register_forward_hook(
            lambda m, a, o, path=path: out.__setitem__(path, o)))
    with torch.no_grad():
        model(inputs, mode='tensor')
    for h in handles:
        h.remove()
    return out


def test_losses_match_a_computation_from_the_models_themselves():
    model = vitkd()
    model.train()
    inputs, samples = batch()
    torch.manual_seed(5)
    losses = model.loss(inputs, samples)
    assert set(losses) == {'loss_cls', 'loss_vitkd_mimic', 'loss_vitkd_gen'}

    paths = ['backbone.layers.0', 'backbone.layers.1', 'backbone.ln1']
    s = block_outputs(model.student, paths, inputs)
    t = block_outputs(model.teachers['teacher'], paths, inputs)
    # Patch tokens: drop the class token (the only prefix token here).
    s, t = ({k: v[:, 1:] for k, v in d.items()} for d in (s, t))
    with torch.no_grad():
        expected = sum(
            ((model.connectors[f'mimic{i}'](s[p]) - t[p])**2).sum()
            for i, p in enumerate(paths[:2])) / 3 * 3e-5
        torch.manual_seed(5)  # the generator draws the same mask again
        gen = model.connectors['gen'](s['backbone.ln1'])
        err = ((gen['preds'] - t['backbone.ln1'])**2).sum(-1)
        expected_gen = (err * gen['mask']).sum() / 3 / 0.5 * 3e-6
    torch.testing.assert_close(losses['loss_vitkd_mimic'], expected)
    torch.testing.assert_close(losses['loss_vitkd_gen'], expected_gen)
    assert gen['mask'].sum(1).tolist() == [8, 8, 8]  # 16 tokens, half


def test_gradients_reach_student_and_connectors_not_teacher():
    model = vitkd()
    model.train()
    inputs, samples = batch()
    losses = model.loss(inputs, samples)
    (losses['loss_vitkd_mimic'] + losses['loss_vitkd_gen']).backward()
    conn = dict(model.connectors.named_parameters())
    for name in ('mimic0.proj.weight', 'mimic1.proj.weight',
                 'gen.align.weight', 'gen.mask_token',
                 'gen.generation.0.weight', 'gen.generation.2.weight'):
        assert conn[name].grad is not None and conn[name].grad.abs().sum(
        ) > 0, name
    student = dict(model.student.named_parameters())
    assert student['backbone.layers.0.ffn.layers.1.weight'].grad.abs().sum(
    ) > 0
    assert student['backbone.patch_embed.projection.weight'].grad is not None
    teacher = model.teachers['teacher']
    assert all(p.grad is None and not p.requires_grad
               for p in teacher.parameters())
    # Not in the distiller's parameters (optimizer) or state dict.
    names = [n for n, _ in model.named_parameters()]
    assert not any(n.startswith('teacher') for n in names)
    assert not any('teacher' in k for k in model.state_dict())


def test_any_block_list():
    model = vitkd(blocks=(1, ))
    losses = model.loss(*batch())
    assert losses['loss_vitkd_mimic'] > 0
    assert set(model.connectors) == {'mimic1', 'gen'}


def test_different_token_grids_are_refused_at_build():
    with pytest.raises(DistillerConfigError) as info:
        vitkd(teacher_patch=4)  # 8x8 teacher tokens vs 4x4 student tokens
    message = str(info.value)
    assert 'loss_vitkd_mimic' in message and 'token grids differ' in message
    assert '4x4' in message and '8x8' in message
    assert 'TokenGridResize' in message


def test_token_grid_resize_is_the_explicit_option():
    model = vitkd(teacher_patch=4, resize=True)
    losses = model.loss(*batch())
    assert torch.isfinite(losses['loss_vitkd_gen'])
    assert losses['loss_vitkd_mimic'] > 0


def test_list_input_errors_name_the_loss():
    with pytest.raises(DistillerConfigError) as info:
        MODELS.build(dict(
            type='ClassificationDistiller',
            student=classifier('VisionTransformer', S_DIM, 2),
            teacher=dict(config=classifier('FixedDeiT3', T_DIM, 2),
                         checkpoint=None, random_init=True),
            data_preprocessor=dict(num_classes=10),
            taps=dict(s_block0=dict(path='backbone.layers.0'),
                      t_block0=dict(model='teacher',
                                    path='backbone.layers.0')),
            connectors=dict(mimic0=dict(type='LinearConnector',
                                        in_channels=S_DIM,
                                        out_channels=T_DIM)),
            losses=dict(loss_vitkd_mimic=dict(
                type='ViTKDMimicLoss',
                inputs=dict(preds=['mimic0(s_block0)', 'mimic0(s_blok1)'],
                            targets=['t_block0', 't_block0'])))))
    assert ("Loss 'loss_vitkd_mimic', input preds='[mimic0(s_block0), "
            "mimic0(s_blok1)]': no source 's_blok1'") in str(info.value)
