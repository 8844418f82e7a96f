"""The work of each supported loss term, written out for the hand-written
reference step (``tools/analysis/reference_step.py``), one module per
method.

``BUILDERS`` maps a loss type to ``build(step, name, module, inputs,
factor)``, which reads the term's config inputs (refusing any wiring it
does not write out with :class:`ReferenceUnsupported`), hooks the taps and
copies the connectors it needs through ``step``, and returns the term as a
function of the step's values (``logits_s``, ``logits_t``, ``labels``, and
a per-step cache).
"""
from . import attndistill, dearkd, logits, scalekd, vitkd
from .common import ReferenceUnsupported

__all__ = ['BUILDERS', 'ReferenceUnsupported']

BUILDERS = {
    **logits.BUILDERS,
    **vitkd.BUILDERS,
    **scalekd.BUILDERS,
    **attndistill.BUILDERS,
    **dearkd.BUILDERS,
}
