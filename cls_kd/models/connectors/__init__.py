from .projectors import ConvConnector, LinearConnector
from .teacher_part import TeacherPart
from .vitkd import TokenGridResize, ViTKDGenerator, random_masking

__all__ = [
    'LinearConnector', 'ConvConnector', 'TeacherPart', 'TokenGridResize',
    'ViTKDGenerator', 'random_masking'
]
