"""docs/reference.md is what tools/misc/gen_reference.py writes now, and it
documents every registered loss, connector, selector, teacher runner,
distiller, hook and optimizer wrapper with its arguments and summary."""
import importlib.util
import inspect
import os.path as osp
import re

import pytest

import cls_kd
from cls_kd import registry

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PAGE = osp.join(ROOT, 'docs', 'reference.md')
REGENERATE = ('docs/reference.md is out of date: run '
              '`python tools/misc/gen_reference.py` and commit the result')


def _load_generator():
    path = osp.join(ROOT, 'tools', 'misc', 'gen_reference.py')
    spec = importlib.util.spec_from_file_location('gen_reference', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _page() -> str:
    with open(PAGE, encoding='utf-8') as f:
        return f.read()


def _entries(kind):
    """``(name, object)`` that cls_kd registers, of one kind."""
    cls_kd.register_all_modules(init_default_scope=False)
    reg, prefix = {
        'loss': (registry.MODELS, 'cls_kd.models.losses'),
        'connector': (registry.MODELS, 'cls_kd.models.connectors'),
        'distiller': (registry.MODELS, 'cls_kd.models.distillers'),
        'selector': (registry.TAP_SELECTORS, 'cls_kd.'),
        'runner': (registry.TEACHER_RUNNERS, 'cls_kd.'),
        'hook': (registry.HOOKS, 'cls_kd.'),
        'optim wrapper': (registry.OPTIM_WRAPPERS, 'cls_kd.'),
    }[kind]
    reg.import_from_location()
    return sorted((n, o) for n, o in reg.module_dict.items()
                  if o.__module__.startswith(prefix))


def _section(page: str, name: str) -> str:
    match = re.search(rf'^### `{re.escape(name)}`\n(.*?)(?=^##)', page + '##',
                      re.M | re.S)
    assert match, f'{name} has no entry in docs/reference.md. {REGENERATE}'
    return match.group(1)


def _plain(text: str) -> str:
    """Words only: no code marks, roles or line breaks."""
    return ' '.join(re.sub(r':\w+:|`', '', text).split())


def test_page_is_up_to_date(tmp_path):
    out = tmp_path / 'reference.md'
    _load_generator().main(['--out', str(out)])
    assert out.read_text(encoding='utf-8') == _page(), REGENERATE


@pytest.mark.parametrize('kind', [
    'loss', 'connector', 'distiller', 'selector', 'runner', 'hook',
    'optim wrapper'
])
def test_every_entry_has_summary_and_arguments(kind):
    page = _page()
    entries = _entries(kind)
    assert entries, kind
    for name, obj in entries:
        section = _section(page, name)
        first_line = inspect.cleandoc(obj.__doc__ or '').split('\n')[0]
        assert first_line, f'{name} has no docstring'
        assert _plain(first_line) in _plain(section), (name, first_line)
        if inspect.isclass(obj):
            params = list(
                inspect.signature(obj.__init__).parameters.values())[1:]
        else:  # selectors: options after (value, ctx)
            params = list(inspect.signature(obj).parameters.values())[2:]
        for p in params:
            if p.kind is not p.VAR_KEYWORD:
                assert f'| `{p.name}` |' in section, (name, p.name)


def test_distillers_list_the_base_arguments():
    section = _section(_page(), 'ClassificationDistiller')
    for name in ('student', 'student_loss_weight', 'teacher', 'teachers',
                 'taps', 'connectors', 'losses', 'stages', 'dry_run'):
        assert f'| `{name}` |' in section, name
    # **kwargs goes to BaseDistiller, whose arguments are listed instead.
    assert '`**kwargs`' not in section
    assert re.search(r'\| `taps` \|.*\(from `BaseDistiller`\)', section)


def test_docstring_args_parser():
    parse = _load_generator().docstring_args
    doc = """Summary.

    Args:
        a, b (Tensor): Two inputs,
            on two lines.
        c: No type.
        **kwargs: Passed on.

    Returns:
        d (int): Not an argument.
    """
    assert parse(doc) == {
        'a': ('Tensor', 'Two inputs, on two lines.'),
        'b': ('Tensor', 'Two inputs, on two lines.'),
        'c': ('', 'No type.'),
        'kwargs': ('', 'Passed on.'),
    }
