"""k-NN evaluation of a backbone's features inside mmengine's val/test
loop (the DINO protocol), for students distilled without labels.

Reference: Wu et al., "Unsupervised Feature Learning via Non-Parametric
Instance Discrimination", CVPR 2018; Caron et al., "Emerging Properties in
Self-Supervised Vision Transformers" (DINO), ICCV 2021 (k = 20, T = 0.07).
"""
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from mmengine.dist import collect_results
from mmengine.evaluator import BaseMetric
from mmengine.model import is_model_wrapper
from mmengine.runner import TestLoop, ValLoop
from torch.utils.data import DataLoader

from cls_kd.errors import DistillerConfigError, check_number
from cls_kd.registry import LOOPS, METRICS

__all__ = ['knn_predict', 'KNNAccuracy', 'KNNValLoop', 'KNNTestLoop',
           'extract_features']


def knn_predict(queries: torch.Tensor, bank: torch.Tensor,
                bank_labels: torch.Tensor, num_classes: int, k: int = 20,
                temperature: float = 0.07,
                chunk: int = 1024) -> torch.Tensor:
    """Class scores by a temperature-weighted vote of the k nearest bank
    features (cosine similarity of L2-normalised features).

    Args:
        queries (Tensor): (Q, C) features.
        bank (Tensor): (M, C) features of the labelled bank.
        bank_labels (Tensor): (M, ) class indices.
        num_classes (int): K.
        k (int): Neighbours, at most M. Defaults to 20.
        temperature (float): Vote weight ``exp(sim / T)``. Defaults to 0.07.
        chunk (int): Queries per similarity block (memory). Defaults to 1024.

    Returns:
        Tensor: (Q, K) summed vote weights per class.
    """
    if k > bank.shape[0]:
        raise ValueError(f'k={k} neighbours asked of a feature bank of '
                         f'{bank.shape[0]}.')
    bank = F.normalize(bank.float(), dim=1)
    scores = []
    for q in F.normalize(queries.float(), dim=1).split(chunk):
        sim, idx = (q @ bank.T).topk(k, dim=1)  # Q, k
        weights = (sim / temperature).exp()
        votes = torch.zeros(q.shape[0], num_classes, device=q.device)
        scores.append(votes.scatter_add_(1, bank_labels[idx], weights))
    return torch.cat(scores)


@METRICS.register_module()
class KNNAccuracy(BaseMetric):
    """Top-k accuracy of a k-NN classifier on backbone features.

    The feature bank (the labelled train split) is set by
    :class:`KNNValLoop` / :class:`KNNTestLoop` before each evaluation; they
    check ``k`` against the bank's size and ``topk`` against its number of
    classes when they are built, before any feature is extracted.

    Args:
        k (int): Neighbours, an integer from 1 to the bank's size. Defaults
            to 20.
        temperature (float): Vote temperature, > 0. Defaults to 0.07.
        topk (tuple[int]): Reported accuracies, each from 1 to the number of
            classes. Defaults to (1, 5).
        prefix (str): Metric name prefix. Defaults to ``'knn'``.
    """
    default_prefix = 'knn'

    def __init__(self, k: int = 20, temperature: float = 0.07,
                 topk: Sequence[int] = (1, 5),
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        check_number('KNNAccuracy.k', k, low=1, integer=True)
        check_number('KNNAccuracy.temperature', temperature, low=0,
                     low_open=True)
        topk = (topk, ) if isinstance(topk, int) else tuple(topk)
        if not topk:
            raise DistillerConfigError('KNNAccuracy.topk must name at least '
                                       'one k, e.g. (1, 5).')
        for i, t in enumerate(topk):
            check_number(f'KNNAccuracy.topk[{i}]', t, low=1, integer=True)
        self.k, self.temperature, self.topk = k, temperature, topk
        self.bank: Optional[torch.Tensor] = None
        self.bank_labels: Optional[torch.Tensor] = None
        self.num_classes: Optional[int] = None

    def check_bank(self, size: int, num_classes: Optional[int],
                   where: str = 'KNNAccuracy') -> None:
        """Raise a :class:`DistillerConfigError` unless ``k`` fits a bank of
        ``size`` features and ``topk`` fits ``num_classes`` classes.

        Args:
            size (int): Number of features in the bank.
            num_classes (int, optional): Number of classes; None when
                unknown (not checked).
            where (str): What the metric is, for the message (e.g.
                ``'val_evaluator'``). Defaults to ``'KNNAccuracy'``.
        """
        if self.k > size:
            raise DistillerConfigError(
                f'{where}: KNNAccuracy.k={self.k} neighbours, but the '
                f'feature bank has {size} images; set k <= {size} or use a '
                f'larger bank.')
        if num_classes is not None and max(self.topk) > num_classes:
            raise DistillerConfigError(
                f'{where}: KNNAccuracy.topk={self.topk} asks for the top '
                f'{max(self.topk)} of {num_classes} classes; keep each '
                f'value <= {num_classes}.')

    def set_bank(self, features: torch.Tensor, labels: torch.Tensor,
                 num_classes: Optional[int] = None) -> None:
        """Set the feature bank.

        Args:
            features (Tensor): (M, C) bank features.
            labels (Tensor): (M, ) their class indices.
            num_classes (int, optional): Number of classes (the bank
                dataset's); defaults to the largest label seen, plus 1.
        """
        self.bank, self.bank_labels = features.cpu(), labels.cpu().long()
        self.num_classes = num_classes

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            self.results.append((sample['feat'].cpu(),
                                 int(sample['gt_label'])))

    def compute_metrics(self, results: List) -> Dict[str, float]:
        if self.bank is None:
            raise RuntimeError(
                'KNNAccuracy has no feature bank: evaluate it with '
                "val_cfg=dict(type='KNNValLoop', bank_dataloader=...) "
                "(or test_cfg=dict(type='KNNTestLoop', ...)).")
        feats = torch.stack([f for f, _ in results])
        labels = torch.tensor([y for _, y in results])
        num_classes = self.num_classes or int(
            max(self.bank_labels.max(), labels.max())) + 1
        self.check_bank(len(self.bank), num_classes)
        scores = knn_predict(feats, self.bank, self.bank_labels, num_classes,
                             self.k, self.temperature)
        ranked = scores.topk(max(self.topk), dim=1).indices
        hits = ranked == labels[:, None]
        return {
            f'top{t}': hits[:, :t].any(1).float().mean().item() * 100
            for t in self.topk
        }


def extract_features(model, data_batch: dict) -> List[dict]:
    """``[dict(feat=(C,), gt_label=int)]`` of a batch: the model's
    ``extract_feat`` output (the last entry of a tuple, e.g. a ViT's class
    token after its final norm; maps are average-pooled)."""
    model = model.module if is_model_wrapper(model) else model
    data = model.data_preprocessor(data_batch, False)
    feats = model.extract_feat(data['inputs'])
    if isinstance(feats, (tuple, list)):
        feats = feats[-1]
    if feats.dim() == 4:
        feats = feats.mean(dim=(2, 3))
    elif feats.dim() != 2:
        raise ValueError(f'k-NN evaluation needs (B, C) features or maps, '
                         f'got {tuple(feats.shape)}.')
    samples = data['data_samples'] or []
    if len(samples) != feats.shape[0] or 'gt_label' not in samples[0]:
        raise ValueError('k-NN evaluation needs labelled samples (the bank '
                         'and val splits must be read with labels).')
    return [
        dict(feat=f, gt_label=s.gt_label.item())
        for f, s in zip(feats, samples)
    ]


class _KNNLoopMixin:
    """Extracts the bank's features (all ranks, gathered in dataset order),
    hands them to every :class:`KNNAccuracy`, then runs the loop on
    features."""

    #: Where the loop is configured: ``val`` (``val_cfg``,
    #: ``val_evaluator``) or ``test``.
    split = 'val'

    def _init_bank(self, runner, bank_dataloader: Union[DataLoader, dict]):
        self.bank_dataloader = runner.build_dataloader(
            bank_dataloader, seed=runner.seed) if isinstance(
                bank_dataloader, dict) else bank_dataloader
        self.knn_metrics = [
            m for m in self.evaluator.metrics if isinstance(m, KNNAccuracy)
        ]
        if not self.knn_metrics:
            raise ValueError('A k-NN loop needs a KNNAccuracy metric in its '
                             'evaluator.')
        # Before any feature is extracted: the bank's size and classes are
        # known from its dataset.
        dataset = self.bank_dataloader.dataset
        classes = getattr(dataset, 'metainfo', {}).get('classes')
        self.num_classes = len(classes) if classes else None
        for metric in self.knn_metrics:
            metric.check_bank(
                len(dataset), self.num_classes,
                f'{self.split}_evaluator with {self.split}_cfg.'
                f'bank_dataloader')

    @torch.no_grad()
    def _fill_bank(self) -> None:
        self.runner.model.eval()
        items = []
        for i, batch in enumerate(self.bank_dataloader):
            items.extend((s['feat'].cpu(), s['gt_label'])
                         for s in extract_features(self.runner.model, batch))
            if i % 50 == 0:
                self.runner.logger.info(
                    f'k-NN bank: {i + 1}/{len(self.bank_dataloader)} '
                    f'batches')
        items = collect_results(items, len(self.bank_dataloader.dataset))
        feats = torch.stack([f for f, _ in items])
        labels = torch.tensor([y for _, y in items])
        for metric in self.knn_metrics:
            metric.set_bank(feats, labels, self.num_classes)

    def run(self) -> dict:
        self._fill_bank()
        return super().run()

    @torch.no_grad()
    def run_iter(self, idx, data_batch):
        self.evaluator.process(
            data_samples=extract_features(self.runner.model, data_batch),
            data_batch=data_batch)


@LOOPS.register_module()
class KNNValLoop(_KNNLoopMixin, ValLoop):
    """Validation by k-NN on the model's features.

    Args:
        runner (Runner): The runner.
        dataloader (DataLoader | dict): The labelled val split.
        evaluator (Evaluator | dict | list): With a :class:`KNNAccuracy`.
        bank_dataloader (DataLoader | dict): The labelled train split, with
            the test pipeline: the k-NN feature bank, rebuilt each time.
    """

    def __init__(self, runner, dataloader, evaluator, bank_dataloader,
                 fp16: bool = False):
        super().__init__(runner, dataloader, evaluator, fp16)
        self._init_bank(runner, bank_dataloader)


@LOOPS.register_module()
class KNNTestLoop(_KNNLoopMixin, TestLoop):
    """:class:`KNNValLoop` for ``tools/test.py``."""

    split = 'test'

    def __init__(self, runner, dataloader, evaluator, bank_dataloader,
                 fp16: bool = False):
        super().__init__(runner, dataloader, evaluator, fp16)
        self._init_bank(runner, bank_dataloader)
