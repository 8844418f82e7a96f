from .classification import ClassificationDistiller, DistillerConfigError

__all__ = ['ClassificationDistiller', 'DistillerConfigError']
