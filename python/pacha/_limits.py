"""Caps on every parser of user input: size, nesting depth and, through those, time.

YAML, TOML and JSON parsers recurse once per level of nesting, and PyYAML is quadratic on
nested flow sequences (80 KB of ``[[[[…`` took 84 s to reject): a card, a recipe or a
``--set`` value from a user must not hang pacha or end in a ``RecursionError``. So nesting
is measured on the text before parsing (brackets and braces outside quoted strings) and on
the parsed value after (dotted TOML keys and table headers nest without brackets), and both
are capped at `MAX_NESTING`. With the size caps of each kind of input, that bounds the time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pacha.errors import InvalidInputError

__all__ = ["MAX_NESTING", "check_nesting", "parse_capped"]

#: Levels of nesting any user document may have (tables in tables, lists in lists). Cards,
#: recipes and parameters need a handful.
MAX_NESTING = 64

T = TypeVar("T")


def _text_nesting(text: str, limit: int) -> int:
    """The deepest nesting of brackets and braces outside quoted strings, counted up to
    `limit + 1` (a quick scan, not a parser: it may overcount, never undercount by much)."""
    depth = deepest = 0
    quote = ""
    escaped = False
    for c in text:
        if quote:
            if escaped:
                escaped = False
            elif c == "\\" and quote == '"':
                escaped = True
            elif c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
        elif c in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        elif c in "]}":
            depth = max(0, depth - 1)
        elif c == "\n":
            # An unterminated quote (a YAML apostrophe in plain text) ends at the line.
            quote = ""
    return deepest


def _value_nesting(value: Any, limit: int) -> int:
    """The nesting depth of parsed data (without recursion), counted up to `limit + 1`."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, (list, tuple)):
            children = list(item)
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def check_nesting(value: Any, what: str) -> None:
    """Refuse parsed data nested deeper than `MAX_NESTING`."""
    if _value_nesting(value, MAX_NESTING) > MAX_NESTING:
        raise InvalidInputError(f"{what} is nested more than {MAX_NESTING} levels deep; flatten it")


def parse_capped(parse: Callable[[str], T], text: str, what: str, max_bytes: int) -> T:
    """`parse(text)` for user input, refused cleanly (`InvalidInputError` naming `what`)
    when larger than `max_bytes`, nested deeper than `MAX_NESTING` (checked before and after
    parsing), or deep enough to exhaust the parser's recursion."""
    if len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise InvalidInputError(f"{what} is larger than {max_bytes} bytes")
    if _text_nesting(text, MAX_NESTING) > MAX_NESTING:
        raise InvalidInputError(f"{what} is nested more than {MAX_NESTING} levels deep; flatten it")
    try:
        value = parse(text)
    except RecursionError:
        raise InvalidInputError(f"{what} is nested too deeply; flatten it") from None
    check_nesting(value, what)
    return value
