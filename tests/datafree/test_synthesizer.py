"""DeepInversionSynthesizer on a tiny conv-BN classifier: phases, pixel
range, channel order, the optional terms, losses that fall and images the
teacher classifies as their labels, a teacher left untouched, the
learning-rate schedule."""
import inspect
import re

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cls_kd.datafree import (
    DEFAULT_WEIGHTS,
    DeepInversionSynthesizer,
    batch_generator,
    phase_lr,
)


class TinyClassifier(nn.Module):
    """conv-BN-ReLU, global pooling, linear: the mmpretrain call form."""

    def __init__(self, num_classes=3, channels=3):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 4, 3, padding=1), nn.BatchNorm2d(4),
            nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(4, num_classes)
        self.sizes = []

    def forward(self, x, mode='tensor'):
        assert mode == 'tensor'
        self.sizes.append(tuple(x.shape[1:]))
        self.last_input = x.detach()
        return self.fc(self.body(x))


def _frozen(model):
    torch.manual_seed(0)
    for p in model.parameters():
        nn.init.normal_(p)
    model.body[1].running_mean.uniform_(-1, 1)
    model.body[1].running_var.uniform_(0.5, 2)
    return model.eval().requires_grad_(False)


MEAN, STD = [10., 120., 200.], [50., 60., 70.]
LABELS = torch.tensor([0, 1, 2, 0])


def _logged(lines, term):
    """A term's value at every logged iteration (``loss`` is the total)."""
    return [float(re.search(rf'\b{term} (\S+)', line).group(1))
            for line in lines]


def _teacher_scores(teacher, images):
    """The teacher's softmax on written RGB uint8 images (an RGB teacher
    normalised by MEAN/STD)."""
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    x = (pixels - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(
        STD).view(1, 3, 1, 1)
    with torch.no_grad():
        return teacher(x).softmax(1)


def test_phases_pixels_and_a_frozen_teacher():
    teacher = _frozen(TinyClassifier())
    state = {k: v.clone() for k, v in teacher.state_dict().items()}
    synthesizer = DeepInversionSynthesizer(
        teacher, MEAN, STD, to_rgb=True,
        phases=[dict(size=4, iters=2), dict(size=8, iters=3)], jitter=2,
        warmup_iters=0)
    result = synthesizer.synthesize(LABELS, batch_generator(0, 0))
    synthesizer.close()
    # The teacher saw the pooled images, then the full ones, then the final
    # uint8 images once (accuracy).
    assert teacher.sizes == [(3, 4, 4)] * 2 + [(3, 8, 8)] * 4
    assert result.images.shape == (4, 8, 8, 3)
    assert result.images.dtype == np.uint8
    assert set(result.losses) == {'ce', 'tv', 'l2', 'bn', 'total'}
    # Accuracy and scores are the teacher's on the written images.
    scores = _teacher_scores(teacher, result.images)
    assert np.array_equal(result.predictions, scores.argmax(1).numpy())
    assert result.accuracy == pytest.approx(
        (scores.argmax(1) == LABELS).float().mean().item())
    np.testing.assert_allclose(
        result.target_probs, scores[torch.arange(4), LABELS].numpy(),
        rtol=1e-5)
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert not teacher.training
    assert not any(m._forward_hooks or m._forward_pre_hooks
                   for m in teacher.modules())


def test_same_generator_same_images_and_bgr_teachers_give_rgb():
    teacher = _frozen(TinyClassifier())
    phases = [dict(size=8, iters=2)]  # no warm-up: short phases
    synthesizer = DeepInversionSynthesizer(teacher, MEAN, STD, to_rgb=True,
                                           phases=phases, jitter=1,
                                           warmup_iters=0)
    first = synthesizer.synthesize(LABELS, batch_generator(3, 1)).images
    again = synthesizer.synthesize(LABELS, batch_generator(3, 1)).images
    other = synthesizer.synthesize(LABELS, batch_generator(3, 2)).images
    synthesizer.close()
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    # A BGR teacher's input is written reversed (RGB); with the same
    # statistics on every channel the optimisation is the same.
    runs = []
    for to_rgb in (True, False):
        synthesizer = DeepInversionSynthesizer(
            teacher, [100.] * 3, [60.] * 3, to_rgb=to_rgb, phases=phases,
            jitter=1, warmup_iters=0)
        runs.append(synthesizer.synthesize(LABELS, batch_generator(3, 1)))
        synthesizer.close()
    assert np.array_equal(runs[1].images, runs[0].images[..., ::-1])


def test_grayscale_optimises_one_channel():
    teacher = _frozen(TinyClassifier())
    synthesizer = DeepInversionSynthesizer(
        teacher, [80.] * 3, [90.] * 3, phases=[dict(size=8, iters=2)],
        warmup_iters=0, jitter=0, grayscale=True)
    result = synthesizer.synthesize(LABELS, batch_generator(0, 0))
    assert result.images.shape == (4, 8, 8, 1)
    assert teacher.sizes[-1] == (3, 8, 8)


def test_losses_fall_and_the_images_become_their_labels():
    """10 iterations from noise (no jitter, no flips): the total and the
    cross-entropy fall at every logged step, and the teacher classifies
    every written image as its label."""
    teacher = _frozen(TinyClassifier())
    lines = []
    synthesizer = DeepInversionSynthesizer(
        teacher, MEAN, STD, to_rgb=True, phases=[dict(size=8, iters=10)],
        warmup_iters=0, jitter=0, flip=False, log_interval=1,
        log=lines.append)
    result = synthesizer.synthesize(LABELS, batch_generator(0, 0))
    total, ce = _logged(lines, 'loss'), _logged(lines, 'ce')
    assert len(total) == 10
    assert all(b < a for a, b in zip(total, total[1:])), total
    assert total[-1] < total[0] / 4 and ce[-1] < ce[0] / 2, (total, ce)
    assert result.accuracy == 1.0
    assert result.predictions.tolist() == LABELS.tolist()


def test_student_and_intra_divergence_terms():
    teacher, student = _frozen(TinyClassifier()), _frozen(TinyClassifier())
    lines = []
    synthesizer = DeepInversionSynthesizer(
        teacher, MEAN, STD, phases=[dict(size=8, iters=5)], warmup_iters=0,
        jitter=0, flip=False, student=student,
        student_preprocessor=dict(mean=[0., 0., 0.], std=[255.] * 3),
        intra_divergence=dict(diversity=1., boundary=1., margin=1.),
        log_interval=1, log=lines.append)
    result = synthesizer.synthesize(LABELS, batch_generator(0, 0))
    losses = result.losses
    assert set(losses) == {'ce', 'tv', 'l2', 'bn', 'adaptive', 'diversity',
                           'boundary', 'total'}
    # The total weighs each term: the defaults, ADI's 0.2, the divergence
    # terms' weights of 1.
    w = DEFAULT_WEIGHTS
    assert losses['total'] == pytest.approx(
        losses['ce'] + w['tv'] * losses['tv'] + w['l2'] * losses['l2'] +
        w['bn'] * losses['bn'] + w['adaptive'] * losses['adaptive'] +
        losses['diversity'] + losses['boundary'], rel=1e-5)
    total = _logged(lines, 'loss')
    assert total[-1] < total[0] / 2, total
    assert len(student.sizes) == 5  # once an iteration, not for accuracy


def test_configuration_errors():
    teacher = _frozen(TinyClassifier())
    with pytest.raises(ValueError, match='larger than the last one'):
        DeepInversionSynthesizer(
            teacher, MEAN, STD,
            phases=[dict(size=16, iters=1), dict(size=8, iters=1)])
    with pytest.raises(ValueError, match="Unknown loss weights \\['tvl2'\\]"):
        DeepInversionSynthesizer(teacher, MEAN, STD, weights=dict(tvl2=1.))
    with pytest.raises(ValueError, match="close matches: \\['fc'\\]"):
        DeepInversionSynthesizer(
            teacher, MEAN, STD,
            intra_divergence=dict(diversity=1., boundary=1., margin=1.,
                                  feature_module='fcc'))


def test_teacher_size_shows_resized_images_and_writes_small_ones():
    """Data stored smaller than the network's input (digits: 8x8 files,
    resized to 32x32 by the pipeline): the teacher sees every phase and the
    final images bicubic-resized to teacher_size; the images are 8x8."""
    teacher = _frozen(TinyClassifier())
    synthesizer = DeepInversionSynthesizer(
        teacher, MEAN, STD, to_rgb=True, teacher_size=16,
        phases=[dict(size=4, iters=2), dict(size=8, iters=1)], jitter=0,
        flip=False, warmup_iters=0)
    result = synthesizer.synthesize(LABELS, batch_generator(0, 0))
    synthesizer.close()
    assert teacher.sizes == [(3, 16, 16)] * 4
    assert result.images.shape == (4, 8, 8, 3)
    # What the teacher saw last is the written images, resized.
    pixels = torch.from_numpy(result.images).permute(0, 3, 1, 2).float()
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    expected = F.interpolate((pixels - mean) / std, size=16, mode='bicubic',
                             align_corners=False)
    torch.testing.assert_close(teacher.last_input, expected)


def test_phase_lr_is_deepinversions_warmup_then_cosine():
    """DeepInversion's lr_cosine_policy(0.25, 100, 2000), computed by hand:
    lr (it + 1) / 100 for it < 100, then 0.125 (1 + cos(pi (it - 100) /
    1900))."""
    assert phase_lr(0, 2000, 0.25, 100) == pytest.approx(0.0025)
    assert phase_lr(49, 2000, 0.25, 100) == pytest.approx(0.125)
    assert phase_lr(99, 2000, 0.25, 100) == pytest.approx(0.25)
    assert phase_lr(100, 2000, 0.25, 100) == pytest.approx(0.25)
    assert phase_lr(1050, 2000, 0.25, 100) == pytest.approx(0.125)
    assert phase_lr(1999, 2000, 0.25, 100) == pytest.approx(
        0.125 * (1 + np.cos(np.pi * 1899 / 1900)))
    # Without a warm-up: a cosine over the whole phase.
    assert phase_lr(0, 80, 0.25) == pytest.approx(0.25)
    assert phase_lr(40, 80, 0.25) == pytest.approx(0.125)


def test_every_phase_warms_up_then_decays():
    """The lr each iteration used (from the log lines): a 2-iteration
    warm-up, then the cosine, restarted in each phase."""
    lines = []
    synthesizer = DeepInversionSynthesizer(
        _frozen(TinyClassifier()), MEAN, STD, lr=0.25, warmup_iters=2,
        phases=[dict(size=4, iters=4), dict(size=8, iters=4)], jitter=0,
        log_interval=1, log=lines.append)
    synthesizer.synthesize(LABELS, batch_generator(0, 0))
    synthesizer.close()
    used = [float(line.split(' lr ')[1].split()[0]) for line in lines]
    assert used == [0.125, 0.25, 0.25, 0.125] * 2
    with pytest.raises(ValueError, match='warmup_iters'):
        DeepInversionSynthesizer(_frozen(TinyClassifier()), MEAN, STD,
                                 warmup_iters=-1)


def test_default_warmup_is_deepinversions():
    """100 iterations, as NVlabs/DeepInversion deepinversion.py:248."""
    signature = inspect.signature(DeepInversionSynthesizer)
    assert signature.parameters['warmup_iters'].default == 100
