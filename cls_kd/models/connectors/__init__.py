from .projectors import ConvConnector, LinearConnector
from .teacher_part import TeacherPart

__all__ = ['LinearConnector', 'ConvConnector', 'TeacherPart']
