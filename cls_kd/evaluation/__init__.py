from .knn import (
    KNNAccuracy,
    KNNTestLoop,
    KNNValLoop,
    extract_features,
    knn_predict,
)
from .teacher_agreement import TeacherAgreementMetric, teacher_agreement

__all__ = [
    'KNNAccuracy', 'KNNTestLoop', 'KNNValLoop', 'TeacherAgreementMetric',
    'extract_features', 'knn_predict', 'teacher_agreement'
]
