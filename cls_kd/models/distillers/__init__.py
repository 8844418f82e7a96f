from .base import BaseDistiller
from .classification import ClassificationDistiller
from .errors import DistillerConfigError
from .label_free import LabelFreeDistiller

__all__ = [
    'BaseDistiller', 'ClassificationDistiller', 'DistillerConfigError',
    'LabelFreeDistiller'
]
