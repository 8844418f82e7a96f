"""The build-time dry run of a distiller: one dummy batch through every
loss term, so that a wrong config fails before training."""
import torch

from cls_kd.errors import DistillerConfigError, message_with_notes

__all__ = ['dry_run']


def dry_run(distiller) -> None:
    """One dummy batch through every loss term: wrong tap paths and
    selectors, loss inputs and shapes become a
    :class:`DistillerConfigError` now. Also records the order in which
    teacher taps fire, so that a teacher whose output no term reads
    stops after its last tapped module, and the shapes every tap
    captures (for the summary)."""
    inputs, data_samples = distiller.dummy_batch()
    modes = {m: m.training for m in distiller.modules()}
    distiller.eval()
    try:
        with torch.no_grad():
            recorded = {}
            distiller._loss(inputs, data_samples,
                            distiller.active_terms(True), recorded)
            for name in distiller.teachers:  # one pass per teacher
                distiller.captures.note_shapes(recorded.get(name) or (
                    distiller._run_teacher(name, inputs, False, record=True)))
            distiller.captures.record_student(
                lambda: distiller.forward_student(inputs))
    except Exception as e:
        if isinstance(e, torch.OutOfMemoryError):
            raise
        prefix = 'Dry run of the distiller at build time'
        if not isinstance(e, DistillerConfigError):
            height, width = distiller.input_size
            prefix += (f' failed on a {height}x{width} batch (set '
                       f'input_size if that is not the training size)')
        raise DistillerConfigError(
            f'{prefix}: {message_with_notes(e)}') from e
    finally:
        for module, training in modes.items():
            module.training = training
    for name, taps in distiller.captures.teachers.items():
        if taps.unfired():
            raise DistillerConfigError(
                f'Teacher {name!r}: taps {taps.unfired()} never fired in '
                f'a forward pass (is the module used?).')
