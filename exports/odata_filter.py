"""OData 4.0 ``$filter`` expressions: parsed once into a predicate over one row (pure).

The grammar is the part of OData's ABNF that ODK Central accepts, plus what Central refuses (field
paths of the form itself, getodk/central-backend#924):

- comparisons ``eq ne lt le gt ge``, logic ``and or not`` and parentheses, with OData's precedence
  (``not`` binds tighter than comparisons, then ``and``, then ``or``);
- literals: ``'text'`` (``''`` is a quote), integers and decimals, ``true``/``false``/``null``, dates
  ``2026-12-01`` and date-times ``2026-12-01T08:00:00Z`` (a zone is required, as in OData);
- the date functions Central has, ``year() month() day() hour() minute() second()`` and ``now()``, and
  OData's ``contains() startswith() endswith()`` over text;
- member paths: ``__id``, ``__system/submissionDate`` (any ``__system`` member), a form field by its
  path relative to the table (``region``, ``group/field``), and ``$root/Submissions/...`` from a repeat
  table (its submission's fields, which Central does not offer).

``parse_filter(text)`` returns a :class:`Filter`; ``Filter.matches(lookup)`` evaluates it, where
``lookup(path)`` returns the row's value at that path (``None`` when absent). Values are compared as
OData does: ``null`` equals only ``null``, an ordering comparison with ``null`` is false, date-times
compare as instants, a number compares with a number or a numeric text (a
form's text field holding digits), never with other text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

Lookup = Callable[[tuple[str, ...]], Any]
Value = Any

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>'(?:[^']|'')*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2})
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<open>\()
  | (?P<close>\))
  | (?P<comma>,)
  | (?P<name>\$?[^\s(),'/]+(?:/[^\s(),'/]+)*)
    """,
    re.VERBOSE,
)
COMPARISONS = ("eq", "ne", "lt", "le", "gt", "ge")
DATE_PARTS = ("year", "month", "day", "hour", "minute", "second")
TEXT_FUNCTIONS = ("contains", "startswith", "endswith")
_KEYWORDS = {"true": True, "false": False, "null": None}
ROOT_PREFIX = ("$root", "Submissions")
MAX_LENGTH = 8000  # characters of one $filter
MAX_DEPTH = 50  # nested parentheses, nots and function calls (the parser recurses on each)


class FilterError(ValueError):
    """A ``$filter`` that does not parse or that names something OData does not allow here."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} (at character {position + 1})")
        self.message = message
        self.position = position


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    text: str
    at: int


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    at = 0
    while at < len(text):
        m = _TOKEN.match(text, at)
        if m is None:
            raise FilterError(f"unexpected character {text[at]!r}", at)
        kind = m.lastgroup or ""
        if kind != "space":
            out.append(_Token(kind, m.group(), at))
        at = m.end()
    return out


# --- the expression tree: each node is a function of the row's lookup -------------------------------

Node = Callable[[Lookup], Value]


def _as_datetime(value: Value) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str) and len(value) >= 10 and value[4:5] == "-":
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _as_number(value: Value) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | Decimal):
        return Decimal(str(value))
    if isinstance(value, str):
        try:
            return Decimal(value)
        except InvalidOperation:
            return None
    return None


def _comparable(left: Value, right: Value) -> tuple[Any, Any] | None:
    """Both sides in one comparable type, or None when they cannot be compared."""
    if isinstance(left, datetime | date) or isinstance(right, datetime | date):
        a, b = _as_datetime(left), _as_datetime(right)
        return (a, b) if a is not None and b is not None else None
    if isinstance(left, bool) or isinstance(right, bool):
        return (left, right) if isinstance(left, bool) and isinstance(right, bool) else None
    if isinstance(left, int | float | Decimal) or isinstance(right, int | float | Decimal):
        a_num, b_num = _as_number(left), _as_number(right)
        return (a_num, b_num) if a_num is not None and b_num is not None else None
    if isinstance(left, str) and isinstance(right, str):
        return left, right
    return None


def compare(op: str, left: Value, right: Value) -> bool:
    """``left op right`` with OData's rules for ``null`` and mixed types."""
    if left is None or right is None:
        if op == "eq":
            return left is None and right is None
        if op == "ne":
            return not (left is None and right is None)
        return False
    pair = _comparable(left, right)
    if pair is None:
        return op == "ne"
    a, b = pair
    if op == "eq":
        return bool(a == b)
    if op == "ne":
        return bool(a != b)
    if op == "lt":
        return bool(a < b)
    if op == "le":
        return bool(a <= b)
    if op == "gt":
        return bool(a > b)
    return bool(a >= b)


def _date_part(part: str, value: Value) -> int | None:
    moment = _as_datetime(value)
    if moment is None:
        return None
    return int(getattr(moment.astimezone(UTC), part))


@dataclass(frozen=True, slots=True)
class Filter:
    """A parsed ``$filter``: the member paths it reads and its predicate."""

    text: str
    paths: frozenset[tuple[str, ...]]
    node: Node

    def matches(self, lookup: Lookup) -> bool:
        """Whether the row that ``lookup`` reads satisfies the filter."""
        return self.node(lookup) is True


class _Parser:
    def __init__(self, text: str, now: datetime) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.pos = 0
        self.now = now
        self.paths: set[tuple[str, ...]] = set()
        self.depth = 0

    def deeper(self, at: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FilterError(f"nested more than {MAX_DEPTH} levels deep", at)

    def peek(self, offset: int = 0) -> _Token | None:
        at = self.pos + offset
        return self.tokens[at] if at < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            raise FilterError("the expression ends too early", len(self.text))
        self.pos += 1
        return token

    def word(self, *words: str) -> str | None:
        token = self.peek()
        if token is not None and token.kind == "name" and token.text in words:
            self.pos += 1
            return token.text
        return None

    def expect(self, kind: str, what: str) -> _Token:
        token = self.take()
        if token.kind != kind:
            raise FilterError(f"expected {what}, found {token.text!r}", token.at)
        return token

    def parse(self) -> Node:
        if not self.tokens:
            raise FilterError("the filter is empty", 0)
        node = self.or_expr()
        extra = self.peek()
        if extra is not None:
            raise FilterError(f"unexpected {extra.text!r}", extra.at)
        return node

    def or_expr(self) -> Node:
        node = self.and_expr()
        while self.word("or"):
            left, right = node, self.and_expr()
            node = _or(left, right)
        return node

    def and_expr(self) -> Node:
        node = self.comparison()
        while self.word("and"):
            left, right = node, self.comparison()
            node = _and(left, right)
        return node

    def comparison(self) -> Node:
        left = self.unary()
        op = self.word(*COMPARISONS)
        if op is None:
            return left
        right = self.unary()
        return _compare(op, left, right)

    def unary(self) -> Node:
        token = self.peek()
        if self.word("not"):
            self.deeper(token.at if token else 0)
            inner = self.unary()
            self.depth -= 1
            return _not(inner)
        return self.primary()

    def primary(self) -> Node:
        token = self.take()
        if token.kind == "open":
            self.deeper(token.at)
            node = self.or_expr()
            self.expect("close", "')'")
            self.depth -= 1
            return node
        if token.kind == "string":
            text = token.text[1:-1].replace("''", "'")
            return _constant(text)
        if token.kind == "number":
            number = Decimal(token.text)
            return _constant(int(number) if number == number.to_integral_value() and "." not in token.text else number)
        if token.kind == "datetime":
            moment = _as_datetime(token.text)
            if moment is None:
                raise FilterError(f"not a date-time: {token.text!r}", token.at)
            return _constant(moment)
        if token.kind == "date":
            try:
                return _constant(date.fromisoformat(token.text))
            except ValueError:
                raise FilterError(f"not a date: {token.text!r}", token.at) from None
        if token.kind == "name":
            if token.text in _KEYWORDS:
                return _constant(_KEYWORDS[token.text])
            following = self.peek()
            if following is not None and following.kind == "open" and "/" not in token.text:
                return self.function(token)
            return self.member(token)
        raise FilterError(f"unexpected {token.text!r}", token.at)

    def function(self, name: _Token) -> Node:
        self.deeper(name.at)
        self.expect("open", "'('")
        args: list[Node] = []
        if self.peek() is not None and self.peek().kind != "close":  # type: ignore[union-attr]
            args.append(self.or_expr())
            while self.peek() is not None and self.peek().kind == "comma":  # type: ignore[union-attr]
                self.take()
                args.append(self.or_expr())
        self.expect("close", "')'")
        self.depth -= 1
        if name.text in DATE_PARTS and len(args) == 1:
            return _date_function(name.text, args[0])
        if name.text == "now" and not args:
            return _constant(self.now)
        if name.text in TEXT_FUNCTIONS and len(args) == 2:
            return _text_function(name.text, args[0], args[1])
        known = ", ".join((*DATE_PARTS, "now", *TEXT_FUNCTIONS))
        raise FilterError(f"unknown function {name.text}() with {len(args)} argument(s) (known: {known})", name.at)

    def member(self, token: _Token) -> Node:
        segments = tuple(token.text.split("/"))
        if segments[0].startswith("$") and segments[:2] != ROOT_PREFIX:
            raise FilterError(f"unknown path {token.text!r} (only $root/Submissions/... is allowed)", token.at)
        if any(s == "" for s in segments) or (segments[:2] == ROOT_PREFIX and len(segments) == 2):
            raise FilterError(f"not a member path: {token.text!r}", token.at)
        self.paths.add(segments)
        return _member(segments)


def _constant(value: Value) -> Node:
    return lambda _lookup: value


def _member(segments: tuple[str, ...]) -> Node:
    return lambda lookup: lookup(segments)


def _or(left: Node, right: Node) -> Node:
    return lambda lookup: left(lookup) is True or right(lookup) is True


def _and(left: Node, right: Node) -> Node:
    return lambda lookup: left(lookup) is True and right(lookup) is True


def _not(inner: Node) -> Node:
    return lambda lookup: inner(lookup) is not True


def _compare(op: str, left: Node, right: Node) -> Node:
    return lambda lookup: compare(op, left(lookup), right(lookup))


def _date_function(part: str, arg: Node) -> Node:
    return lambda lookup: _date_part(part, arg(lookup))


def _text_function(name: str, haystack: Node, needle: Node) -> Node:
    def run(lookup: Lookup) -> bool:
        a, b = haystack(lookup), needle(lookup)
        if not isinstance(a, str) or not isinstance(b, str):
            return False
        if name == "contains":
            return b in a
        return a.startswith(b) if name == "startswith" else a.endswith(b)

    return run


def parse_filter(text: str, now: datetime | None = None) -> Filter:
    """Parse a ``$filter`` value; ``now`` is what ``now()`` means (default: the current time, UTC)."""
    if len(text) > MAX_LENGTH:
        raise FilterError(f"longer than {MAX_LENGTH} characters", MAX_LENGTH)
    parser = _Parser(text, now or datetime.now(UTC))
    node = parser.parse()
    return Filter(text, frozenset(parser.paths), node)
