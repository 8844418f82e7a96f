"""The teacher's class probabilities on validation batches, computed once
per sample and reused, for :class:`TeacherAgreementMetric`."""
from typing import Callable, Dict, List, Optional, Tuple

import torch
from mmengine.logging import MMLogger

__all__ = ['TeacherValScores']

Fingerprint = Tuple[float, float]


def _fingerprints(inputs: torch.Tensor) -> List[Fingerprint]:
    """``(sum, sum of squares)`` of each preprocessed image: a cached score
    is reused only for the very same image, not for whatever sample has the
    same index in another dataset or pipeline."""
    flat = inputs.detach().flatten(1).double()  # B, C*H*W
    return list(zip(flat.sum(1).tolist(), flat.square().sum(1).tolist()))


class TeacherValScores:
    """Puts the teacher's class probabilities in each validation sample, as
    ``teacher_score`` beside the student's ``pred_score``.

    The teacher is frozen and validation pipelines are deterministic, so the
    scores of a sample (by its ``sample_idx``, checked against a fingerprint
    of its image) are kept on the CPU after the first validation and later
    validations skip the teacher's forward (N x C floats: 200 MB for
    ImageNet's 50k x 1000, divided among the ranks).

    Args:
        cache (bool): Keep and reuse the scores. Defaults to True.
    """

    def __init__(self, cache: bool = True):
        self.cache = cache
        self.teacher_runs = 0
        self._store: Dict[int, Tuple[Fingerprint, torch.Tensor]] = {}
        self._disabled: Optional[str] = None

    def _cached(self, keys: list,
                prints: List[Fingerprint]) -> Optional[torch.Tensor]:
        hits = [self._store.get(k) for k in keys]
        if any(h is None or h[0] != p for h, p in zip(hits, prints)):
            return None
        return torch.stack([h[1] for h in hits])

    def add_to(self, data_samples: list, inputs: torch.Tensor,
               run_teacher: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Set ``teacher_score`` on each of ``data_samples``.

        Args:
            data_samples (list[DataSample]): The student's predictions.
            inputs (Tensor): The preprocessed batch, (B, 3, H, W).
            run_teacher (callable): The teacher's logits, (B, C), of
                ``inputs``; may raise ``ValueError`` for a batch the teacher
                cannot take (then no later batch is tried, with a warning).
        """
        if self._disabled is not None:
            return
        keys = [s.metainfo.get('sample_idx') for s in data_samples]
        cache = self.cache and None not in keys
        prints = _fingerprints(inputs) if cache else None
        scores = self._cached(keys, prints) if cache else None
        if scores is None:
            try:
                logits = run_teacher(inputs)
            except ValueError as e:
                self._disabled = str(e)
                MMLogger.get_current_instance().warning(
                    f'No teacher scores in validation (teacher agreement '
                    f'metrics will be missing): {e}')
                return
            self.teacher_runs += 1
            scores = logits.float().softmax(dim=1)
            if cache:
                for key, fingerprint, score in zip(keys, prints,
                                                   scores.cpu()):
                    self._store[key] = (fingerprint, score)
        scores = scores.to(inputs.device)
        for sample, score in zip(data_samples, scores):
            sample.set_field(score, 'teacher_score', dtype=torch.Tensor)
