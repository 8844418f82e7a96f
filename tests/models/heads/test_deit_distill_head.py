import torch
import torch.nn.functional as F
from mmpretrain.structures import DataSample

import cls_kd
from cls_kd.models.heads import DeiTDistillHead
from cls_kd.registry import MODELS

cls_kd.register_all_modules()


def linear(layer, x):
    return x @ layer.weight.t() + layer.bias


def head_and_feats():
    torch.manual_seed(0)
    head = DeiTDistillHead(num_classes=5, in_channels=8)
    cls_token, dist_token = torch.randn(3, 8), torch.randn(3, 8)
    # What DistilledVisionTransformer returns: one stage, (cls, dist).
    return head, ((cls_token, dist_token), ), cls_token, dist_token


def test_train_mode_returns_class_token_logits_and_runs_dist_head():
    head, feats, cls_token, dist_token = head_and_feats()
    head.train()
    seen = []
    head.layers.head_dist.register_forward_hook(
        lambda m, args, out: seen.append(out))
    out = head(feats)
    torch.testing.assert_close(out, linear(head.layers.head, cls_token))
    assert len(seen) == 1
    torch.testing.assert_close(seen[0],
                               linear(head.layers.head_dist, dist_token))


def test_eval_mode_averages_both_heads():
    head, feats, cls_token, dist_token = head_and_feats()
    head.eval()
    expected = (linear(head.layers.head, cls_token) +
                linear(head.layers.head_dist, dist_token)) / 2
    torch.testing.assert_close(head(feats), expected)


def deit_distiller():
    torch.manual_seed(0)
    arch = dict(embed_dims=32, num_layers=2, num_heads=2,
                feedforward_channels=64)
    return MODELS.build(
        dict(
            type='ClassificationDistiller',
            student=dict(
                type='ImageClassifier',
                backbone=dict(
                    type='DistilledVisionTransformer',
                    arch=arch,
                    img_size=32,
                    patch_size=8),
                neck=None,
                head=dict(
                    type='DeiTDistillHead', num_classes=10, in_channels=32)),
            teacher=dict(
                config=dict(
                    type='ImageClassifier',
                    backbone=dict(
                        type='VisionTransformer',
                        arch=dict(arch, embed_dims=48),
                        img_size=32,
                        patch_size=8),
                    neck=None,
                    head=dict(
                        type='VisionTransformerClsHead',
                        num_classes=10,
                        in_channels=48)),
                checkpoint=None,
                random_init=True),
            taps=dict(s_dist=dict(path='head.layers.head_dist')),
            losses=dict(
                loss_deit=dict(
                    type='DeiTDistillLoss',
                    inputs=dict(logits_s='s_dist', logits_t='logits_t'))),
            data_preprocessor=dict(
                num_classes=10, mean=[0., 0., 0.], std=[1., 1., 1.])))


def test_distillation_token_trained_through_tap():
    model = deit_distiller()
    model.train()
    torch.manual_seed(1)
    inputs = torch.randn(2, 3, 32, 32)
    losses = model.loss(inputs,
                        [DataSample().set_gt_label(k) for k in (1, 2)])
    student, head = model.student, model.student.head
    with torch.no_grad():
        _, dist_token = student.backbone(inputs)[-1]
        teacher_class = model.teachers['teacher'](inputs).argmax(dim=1)
        expected = F.cross_entropy(
            linear(head.layers.head_dist, dist_token), teacher_class)
    torch.testing.assert_close(losses['loss_deit'], expected)

    losses['loss_cls'].backward(retain_graph=True)
    assert head.layers.head_dist.weight.grad is None
    assert head.layers.head.weight.grad.abs().sum() > 0
    losses['loss_deit'].backward()
    assert head.layers.head_dist.weight.grad.abs().sum() > 0
