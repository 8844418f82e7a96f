"""Everything about the frozen teachers of a distiller, in one place.

- :mod:`.build`: one teacher from its spec (model, weights, input
  re-normalisation, size checks);
- :mod:`.teacher_set`: the teachers of a distiller, kept outside its module
  tree, frozen, moved with it and shared by its copies;
- :mod:`.running`: running them for a training step (taps, early stop,
  compiled forwards, stored outputs);
- :mod:`.stored_outputs`: outputs stored once and replayed;
- :mod:`.val_scores`: their validation scores, computed once;
- :mod:`.part` and :mod:`.runners`: part of a teacher run with autograd on
  student features (ScaleKD's teacher parameter perception).
"""
from .build import (
    build_teacher,
    expected_input_size,
    renormalisation,
    resolve_input_size,
)
from .part import TeacherAccess, TeacherPart, bind_teacher_part
from .runners import (
    SequentialRunner,
    SwinStageRunner,
    TeacherRunner,
    ViTBlocksRunner,
)
from .running import (
    compile_teacher,
    run_teacher,
    run_teachers,
    teacher_forward,
)
from .stored_outputs import StoredOutputs, stored_teacher_outputs
from .teacher_set import FrozenTeachersMixin, TeacherSet
from .val_scores import TeacherValScores

__all__ = [
    'build_teacher', 'expected_input_size', 'renormalisation',
    'resolve_input_size', 'TeacherAccess', 'TeacherPart', 'bind_teacher_part',
    'SequentialRunner', 'SwinStageRunner', 'TeacherRunner', 'ViTBlocksRunner',
    'compile_teacher', 'run_teacher', 'run_teachers', 'teacher_forward',
    'FrozenTeachersMixin', 'TeacherSet', 'TeacherValScores', 'StoredOutputs',
    'stored_teacher_outputs'
]
