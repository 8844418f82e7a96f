"""Loss-input expressions: ``'s_block0'``, ``'proj0(s_block0)'``,
``'gen(s_last).mask'``, ``'cap4(s_stage4, tpp(s_stage3))'``.

A name is a tap, a built-in source (``logits_s``, ``logits_t``, ...), or a
connector applied to other expressions; ``.key`` picks an entry of a
connector that returns a dict.
"""
import re
from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Union

__all__ = ['Source', 'Call', 'Expression', 'parse_expression', 'walk']

_TOKEN = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*|[(),.])')


@dataclass(frozen=True)
class Source:
    name: str

    def __str__(self):
        return self.name


@dataclass(frozen=True)
class Call:
    connector: str
    args: tuple = field(default_factory=tuple)
    key: Optional[str] = None

    def __str__(self):
        text = f'{self.connector}({", ".join(map(str, self.args))})'
        return f'{text}.{self.key}' if self.key else text


Expression = Union[Source, Call]


def _tokenize(text: str) -> List[str]:
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ValueError(f'Cannot parse loss input {text!r} at '
                             f'{text[pos:]!r}.')
        tokens.append(match.group(1))
        pos = match.end()
    return tokens


def _looks_like_a_list(text: str) -> bool:
    """Whether ``text`` reads as several inputs in one string: brackets
    around it, or a comma outside parentheses."""
    if text.strip().startswith(('[', '(')):
        return True
    depth = 0
    for char in text:
        depth += {'(': 1, ')': -1}.get(char, 0)
        if char == ',' and depth == 0:
            return True
    return False


def parse_expression(text: str) -> Expression:
    """Parse a loss-input expression (see module docstring)."""
    try:
        return _parse(text)
    except ValueError as e:
        if not _looks_like_a_list(text):
            raise
        raise ValueError(
            f'{e} Several inputs (e.g. one per block) are a Python list of '
            f"strings, inputs=dict(preds=['proj0(s_block0)', "
            f"'proj1(s_block1)']), not one string.") from None


def _parse(text: str) -> Expression:
    tokens = _tokenize(text)

    def expect_name(i):
        if i >= len(tokens) or not tokens[i][0].isalpha() and \
                tokens[i][0] != '_':
            raise ValueError(f'Cannot parse loss input {text!r}: expected a '
                             f'name at token {i}.')
        return tokens[i], i + 1

    def parse(i):
        name, i = expect_name(i)
        if i < len(tokens) and tokens[i] == '(':
            args, i = [], i + 1
            while True:
                arg, i = parse(i)
                args.append(arg)
                if i < len(tokens) and tokens[i] == ',':
                    i += 1
                    continue
                if i < len(tokens) and tokens[i] == ')':
                    i += 1
                    break
                raise ValueError(f'Cannot parse loss input {text!r}: '
                                 f'missing ")".')
            key = None
            if i < len(tokens) and tokens[i] == '.':
                key, i = expect_name(i + 1)
            return Call(name, tuple(args), key), i
        return Source(name), i

    expr, end = parse(0)
    if end != len(tokens):
        raise ValueError(f'Cannot parse loss input {text!r}: unexpected '
                         f'{tokens[end]!r}.')
    return expr


def walk(expr: Expression) -> Iterator[Expression]:
    """The expression and all its sub-expressions, depth first."""
    yield expr
    if isinstance(expr, Call):
        for arg in expr.args:
            yield from walk(arg)
