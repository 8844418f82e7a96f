"""ViTKD written out: the mimicking of shallow blocks through linear
projectors and the generation of the deep block through the masked
generator."""
import copy

import torch
import torch.nn as nn

from .common import ReferenceUnsupported, parse, source, unary

__all__ = ['BUILDERS', 'Generator', 'vitkd_mimic', 'vitkd_generation']


def vitkd_mimic(preds, targets):
    return sum(((p.float() - t.float())**2).sum()
               for p, t in zip(preds, targets)) / preds[0].shape[0]


def vitkd_generation(preds, targets, mask, ratio):
    err = ((preds.float() - targets.float())**2).sum(-1)
    return (err * mask).sum() / preds.shape[0] / ratio


class Generator(nn.Module):
    """ViTKD's generation branch written out: align, mask, Conv-ReLU-Conv."""

    def __init__(self, source: nn.Module):
        super().__init__()
        self.mask_ratio = source.mask_ratio
        self.align = copy.deepcopy(source.align)
        self.mask_token = nn.Parameter(source.mask_token.detach().clone())
        self.generation = copy.deepcopy(source.generation)

    def forward(self, x):
        x = self.align(x)
        B, N, D = x.shape
        side = int(N**0.5)
        num_keep = int(N * (1 - self.mask_ratio))
        restore = torch.rand(B, N, device=x.device).argsort(1).argsort(1)
        mask = (restore >= num_keep).to(x.dtype)[..., None]
        x = x * (1 - mask) + self.mask_token.to(x.dtype) * mask
        x = x.transpose(1, 2).reshape(B, D, side, side)
        return self.generation(x).flatten(2).transpose(1, 2), mask[..., 0]


def _mimic_term(step, name, module, inputs, factor):
    """``preds=['proj0(s_0)', ...]`` (linear projectors on student taps)
    against ``targets=['t_0', ...]`` (teacher taps)."""
    texts = list(inputs.get('preds', []))
    targets = [source(parse(t)) for t in inputs.get('targets', [])]
    preds = [unary(parse(p)) for p in texts]
    if (set(inputs) != {'preds', 'targets'} or not preds or None in preds
            or None in targets or len(preds) != len(targets)
            or any(source(arg) is None for _, arg in preds)):
        raise ReferenceUnsupported(f'{name}: inputs {inputs}')
    pairs = [(step.connector(conn, 'LinearConnector').proj,
              step.tap(source(arg)), step.tap(target))
             for (conn, arg), target in zip(preds, targets)]
    w = module.alpha * factor
    f = step.features
    return lambda v: w * vitkd_mimic([proj(f[s]) for proj, s, _ in pairs],
                                     [f[t] for _, _, t in pairs])


def _generation_term(step, name, module, inputs, factor):
    """``preds='gen(s_last).preds'``, ``mask='gen(s_last).mask'`` (one
    generator call) against ``targets='t_last'``."""
    preds, mask = parse(inputs.get('preds')), parse(inputs.get('mask'))
    target = source(parse(inputs.get('targets')))
    gen = (preds.connector, preds.args) if getattr(
        preds, 'key', None) == 'preds' else None
    if (gen is None or getattr(mask, 'key', None) != 'mask'
            or (mask.connector, mask.args) != gen or len(gen[1]) != 1
            or source(gen[1][0]) is None or target is None):
        raise ReferenceUnsupported(f'{name}: inputs {inputs}')
    conn, tap = gen[0], source(gen[1][0])
    original = step.original_connector(conn, 'ViTKDGenerator')
    if original.grid_size is not None:
        raise ReferenceUnsupported(
            f'{name}: connector {conn} (a ViTKDGenerator on a square grid '
            f'is written out)')
    generator = step.connector(conn, 'ViTKDGenerator', make=Generator)
    s, t = step.tap(tap), step.tap(target)
    w, ratio = module.beta * factor, module.mask_ratio

    def generation(v):
        out, m = generator(step.features[s])
        return w * vitkd_generation(out, step.features[t], m, ratio)

    return generation


BUILDERS = dict(
    ViTKDMimicLoss=_mimic_term, ViTKDGenerationLoss=_generation_term)
