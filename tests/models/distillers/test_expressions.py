import pytest

from cls_kd.models.distillers.expressions import (
    Call,
    Source,
    parse_expression,
    walk,
)


def test_source():
    assert parse_expression(' s_block0 ') == Source('s_block0')


def test_call_with_key():
    expr = parse_expression('gen(s_last).mask')
    assert expr == Call('gen', (Source('s_last'), ), 'mask')
    assert str(expr) == 'gen(s_last).mask'


def test_nested_calls_and_walk():
    expr = parse_expression('cap4(s_stage4,tpp( s_stage3 ))')
    assert expr == Call('cap4', (Source('s_stage4'),
                                 Call('tpp', (Source('s_stage3'), ))))
    assert str(expr) == 'cap4(s_stage4, tpp(s_stage3))'
    assert [str(e) for e in walk(expr)] == [
        'cap4(s_stage4, tpp(s_stage3))', 's_stage4', 'tpp(s_stage3)',
        's_stage3'
    ]


def test_same_call_is_one_cache_key():
    # The distiller caches connector outputs by Call without its key.
    a, b = parse_expression('gen(x).a'), parse_expression('gen(x).b')
    assert Call(a.connector, a.args) == Call(b.connector, b.args)
    assert len({Call(a.connector, a.args), Call(b.connector, b.args)}) == 1


@pytest.mark.parametrize('text, message', [
    ('a b', "unexpected 'b'"),
    ('f(x', 'missing'),
    ('f(x).', 'expected a name'),
    ('f(x,)', 'expected a name'),
    ('a-b', "at '-b'"),
    ('a.b', "unexpected '.'"),
    ('', 'expected a name'),
])
def test_errors(text, message):
    with pytest.raises(ValueError, match=message):
        parse_expression(text)
    # One string for what should be a list: the fix is named.
    assert 'list' not in str(_error(text))


def _error(text):
    with pytest.raises(ValueError) as info:
        parse_expression(text)
    return info.value


@pytest.mark.parametrize('text', [
    "['mimic0(s_block0)', 'mimic1(s_block1)']",
    'mimic0(s_block0), mimic1(s_block1)',
    '(s_a, s_b)',
])
def test_a_list_written_as_one_string_names_the_python_list(text):
    message = str(_error(text))
    assert message.startswith(f'Cannot parse loss input {text!r}')
    assert 'are a Python list of strings' in message
    assert "inputs=dict(preds=['proj0(s_block0)', 'proj1(s_block1)'])" in (
        message)
