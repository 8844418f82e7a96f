"""The logit family written out: KD, DKD, NKD and DeiT's distillation
token."""
import torch
import torch.nn.functional as F

from .common import ReferenceUnsupported, parse, source

__all__ = ['BUILDERS', 'kd', 'dkd', 'nkd', 'deit_soft']

LOGIT_INPUTS = {
    'KDLoss': dict(logits_s='logits_s', logits_t='logits_t'),
    'DKDLoss': dict(logits_s='logits_s', logits_t='logits_t',
                    labels='labels'),
    'NKDLoss': dict(logits_s='logits_s', logits_t='logits_t',
                    labels='labels'),
}


# --------------------------------------------------------------- the losses
def kd(logits_s, logits_t, T, form='kl'):
    """T² · KL (``form='kl'``) or T² · the cross-entropy with the
    teacher's soft labels (``'soft_ce'``), averaged over the batch."""
    log_p_s = F.log_softmax(logits_s.float() / T, dim=1)
    log_p_t = F.log_softmax(logits_t.float() / T, dim=1)
    if form == 'soft_ce':
        return -T * T * (log_p_t.exp() * log_p_s).sum(1).mean()
    return T * T * (log_p_t.exp() * (log_p_t - log_p_s)).sum(1).mean()


def non_target(logits, labels):
    """(B, K-1): each row without its label's column."""
    k = logits.shape[1]
    cols = torch.arange(k - 1, device=logits.device)[None]
    return logits.gather(1, cols + (cols >= labels[:, None]).long())


def dkd(logits_s, logits_t, labels, T, alpha, beta):
    z_s, z_t = logits_s.float() / T, logits_t.float() / T

    def binary(z):
        lse = z.logsumexp(1, keepdim=True)
        target = z.gather(1, labels[:, None])
        rest = non_target(z, labels).logsumexp(1, keepdim=True)
        return torch.cat([target, rest], 1) - lse

    def kl(log_p_s, log_p_t):
        return (log_p_t.exp() * (log_p_t - log_p_s)).sum(1).mean()

    tckd = kl(binary(z_s), binary(z_t))
    nckd = kl(F.log_softmax(non_target(z_s, labels), 1),
              F.log_softmax(non_target(z_t, labels), 1))
    return T * T * (alpha * tckd + beta * nckd)


def nkd(logits_s, logits_t, labels, T, gamma):
    z_s, z_t = logits_s.float(), logits_t.float()
    y = labels[:, None]
    target = -(F.softmax(z_t, 1).gather(1, y) *
               F.log_softmax(z_s, 1).gather(1, y)).mean()
    q_t = F.softmax(non_target(z_t, labels) / T, 1)
    log_q_s = F.log_softmax(non_target(z_s, labels) / T, 1)
    return target - gamma * T * T * (q_t * log_q_s).sum(1).mean()


def deit_soft(logits_s, logits_t, T):
    """DeiT's soft term: T² · KL summed over batch and classes, divided by
    their number."""
    log_p_s = F.log_softmax(logits_s.float() / T, dim=1)
    log_p_t = F.log_softmax(logits_t.float() / T, dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum()
    return T * T * kl / logits_s.numel()


# ---------------------------------------------------------------- the terms
def _logit_term(step, name, module, inputs, factor):
    """KD, DKD or NKD on the student's and the teacher's logits."""
    kind = type(module).__name__
    if inputs != LOGIT_INPUTS[kind]:
        raise ReferenceUnsupported(
            f'{name}: {kind} reads {inputs}; the reference knows '
            f'{LOGIT_INPUTS[kind]}.')
    w, T = module.loss_weight * factor, module.temperature
    if kind == 'KDLoss':
        form = module.form
        return lambda v: w * kd(v['logits_s'], v['logits_t'], T, form)
    if kind == 'DKDLoss':
        a, b = module.alpha, module.beta
        return lambda v: w * dkd(v['logits_s'], v['logits_t'], v['labels'],
                                 T, a, b)
    g = module.gamma
    return lambda v: w * nkd(v['logits_s'], v['logits_t'], v['labels'], T,
                             g)


def _deit_term(step, name, module, inputs, factor):
    """DeiT's distillation head (a student tap) against the teacher's
    logits, hard or soft."""
    tap = source(parse(inputs['logits_s'])) if 'logits_s' in inputs else None
    if set(inputs) != {'logits_s', 'logits_t'} or inputs[
            'logits_t'] != 'logits_t' or step.owner(tap) != 'student':
        raise ReferenceUnsupported(
            f'{name}: DeiTDistillLoss reads {inputs}; the reference knows a '
            f'student tap (the distillation head) and logits_t.')
    s = step.tap(tap)
    w, T = module.loss_weight * factor, module.temperature
    if module.mode == 'hard':
        return lambda v: w * F.cross_entropy(step.features[s].float(),
                                             v['logits_t'].argmax(1))
    return lambda v: w * deit_soft(step.features[s], v['logits_t'], T)


BUILDERS = dict(
    KDLoss=_logit_term,
    DKDLoss=_logit_term,
    NKDLoss=_logit_term,
    DeiTDistillLoss=_deit_term)
