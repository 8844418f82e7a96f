from cls_kd.errors import DistillerConfigError

from .base import BaseDistiller
from .classification import ClassificationDistiller
from .label_free import LabelFreeDistiller

__all__ = [
    'BaseDistiller', 'ClassificationDistiller', 'DistillerConfigError',
    'LabelFreeDistiller'
]
