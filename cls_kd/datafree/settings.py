"""The numbers a synthesis is set with, checked where they enter (the
synthesizer's arguments, ``tools/synthesize.py``'s ``synthesis=`` settings):
a phase without iterations, a zero size or a NaN lr is refused with the key,
the allowed range and the value, before any image is optimised."""
import math
from numbers import Integral, Real
from typing import Optional

__all__ = ['SynthesisSettingError', 'check_synthesis_settings']


class SynthesisSettingError(ValueError):
    """A synthesis setting that cannot work; the message names the key, the
    allowed range and the value."""


# key -> (integer?, minimum, minimum allowed?, upper bound (exclusive)).
_RANGES = dict(
    lr=(False, 0, False, None),
    eps=(False, 0, False, None),
    adaptive_temperature=(False, 0, False, None),
    warmup_iters=(True, 0, True, None),
    jitter=(True, 0, True, None),
    log_interval=(True, 0, True, None),
    num_images=(True, 1, True, None),
    batch_size=(True, 1, True, None),
    class_repeats=(True, 1, True, None),
    seed=(True, 0, True, None),
)
_OPTIONAL = dict(teacher_size=(True, 1, True, None))
_INTRA_RANGES = dict(diversity=(False, 0, True, None),
                     boundary=(False, 0, True, None),
                     margin=(False, 0, True, None))
# DeepInversion's ImageNet setting; ``adaptive`` is ADI's weight.
DEFAULT_WEIGHTS = dict(tv=1e-4, l2=1e-5, bn=0.01, first_bn=10., adaptive=0.2)


def _check(key: str, value, integer: bool, low: float, closed: bool,
           high: Optional[float]) -> None:
    """Raise unless ``value`` is a finite number (an integer when
    ``integer``) from ``low`` (included when ``closed``) up to ``high``
    (excluded)."""
    kind = Integral if integer else Real
    fits = isinstance(value, kind) and not isinstance(value, bool) and \
        math.isfinite(value) and (value >= low if closed else value > low) \
        and (high is None or value < high)
    if not fits:
        what = 'an integer' if integer else 'a finite number'
        bound = f'in [{low}, {high})' if high is not None else \
            f'{">=" if closed else ">"} {low}'
        raise SynthesisSettingError(
            f'{key} must be {what} {bound}; got {value!r}.')


def _check_phases(phases, prefix: str) -> None:
    if not isinstance(phases, (list, tuple)) or not phases or any(
            not isinstance(p, dict) or set(p) != {'size', 'iters'}
            for p in phases):
        raise SynthesisSettingError(
            f'{prefix}phases must be a non-empty list of dict(size=, '
            f'iters=); got {phases!r}.')
    for i, phase in enumerate(phases):
        for key in ('size', 'iters'):
            _check(f'{prefix}phases.{i}.{key}', phase[key], True, 1, True,
                   None)
    size = phases[-1]['size']
    if any(p['size'] > size for p in phases):
        raise SynthesisSettingError(
            f'No phase may be larger than the last one (the image size '
            f'{size}): {prefix}phases={phases!r}.')


def check_synthesis_settings(settings: dict, prefix: str = '') -> None:
    """Refuse a synthesis setting out of its range.

    Checks the keys of ``settings`` that it knows (the arguments of
    :class:`DeepInversionSynthesizer` and the run's ``num_images``,
    ``batch_size``, ``class_repeats``, ``seed``), absent keys are left to
    their defaults: ``phases`` (each ``size`` and ``iters`` an integer
    >= 1, no size beyond the last), ``lr``, ``eps`` and
    ``adaptive_temperature`` finite and > 0, ``betas`` two numbers in
    [0, 1), ``warmup_iters`` an integer from 0 up to the shortest phase,
    ``jitter`` and ``log_interval`` integers >= 0, ``teacher_size`` None or
    an integer >= 1, every loss weight (``weights``, ``intra_divergence``'s
    ``diversity``, ``boundary`` and ``margin``) finite and >= 0, unknown
    weight names refused.

    Args:
        settings (dict): Setting name -> value.
        prefix (str): Put before each key in the messages, e.g.
            ``'synthesis.'`` for a config's ``synthesis=`` dict. Defaults to
            ``''`` (the synthesizer's argument names).

    Raises:
        SynthesisSettingError: Names the key (e.g.
            ``synthesis.phases.1.iters``), the allowed range and the value.
    """
    if 'phases' in settings:
        _check_phases(settings['phases'], prefix)
    for key, limits in _RANGES.items():
        if key in settings:
            _check(prefix + key, settings[key], *limits)
    for key, limits in _OPTIONAL.items():
        if settings.get(key) is not None:
            _check(prefix + key, settings[key], *limits)
    if 'phases' in settings and settings.get('warmup_iters'):
        shortest = min(p['iters'] for p in settings['phases'])
        if settings['warmup_iters'] > shortest:
            raise SynthesisSettingError(
                f'{prefix}warmup_iters must be in [0, {shortest}] (the '
                f'shortest phase\'s iters: a longer warm-up never reaches '
                f'{prefix}lr); got {settings["warmup_iters"]!r}.')
    betas = settings.get('betas', (0., 0.))
    if not isinstance(betas, (list, tuple)) or len(betas) != 2:
        raise SynthesisSettingError(
            f'{prefix}betas must be two numbers in [0, 1); got {betas!r}.')
    for i, beta in enumerate(betas):
        _check(f'{prefix}betas.{i}', beta, False, 0, True, 1)
    weights = settings.get('weights') or {}
    unknown = set(weights) - set(DEFAULT_WEIGHTS)
    if unknown:
        raise SynthesisSettingError(
            f'Unknown loss weights {sorted(unknown)} in {prefix}weights; '
            f'known: {sorted(DEFAULT_WEIGHTS)}.')
    for key, value in weights.items():
        _check(f'{prefix}weights.{key}', value, False, 0, True, None)
    intra = settings.get('intra_divergence') or {}
    for key, limits in _INTRA_RANGES.items():
        if key in intra:
            _check(f'{prefix}intra_divergence.{key}', intra[key], *limits)
