"""Reading the JSON a client sends: every number exact, nesting bounded, every string valid Unicode.

Both JSON doors (``server/api/wire.py`` for the JSON API, the push of ``server/services/sync_push.py``)
parse with :func:`parse_client_json`, so a body one refuses the other refuses too, and nothing a client
sends reaches the store as a Python value the store cannot write (issue 15, row 9):

- ``[`` × 100,000 makes ``json.loads`` raise ``RecursionError``; a body nested a few hundred levels
  parses but later breaks whatever walks it recursively (the XML builder of a pushed submission, the
  JSON column writer). Bodies deeper than :data:`MAX_JSON_DEPTH` are refused.
- ``"\\ud800"`` is valid JSON but not Unicode: ``json.loads`` returns a lone surrogate that no UTF-8
  encoder (SQLite's, psycopg's, ours) can write. Such bodies are refused.
- ``"\\u0000"`` is text, but PostgreSQL cannot store U+0000 (neither in ``text`` nor in ``jsonb``): the
  same body answered 500 there and was stored on SQLite. Refused on both.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

# Deeper than any real request: a form nests groups and repeats a dozen levels at most.
MAX_JSON_DEPTH = 64

# Every digit becomes "0" and every other byte a space: a run of 19 digits is then a plain substring
# search, two C passes over the body (a regex for it costs ~10 ms on a 0.5 MB body).
_DIGITS_ONLY = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_LONG_DIGIT_RUN = b"0" * 19
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_NUL_ESCAPE = b"\\u0000"


class ClientJsonError(ValueError):
    """The body is not JSON this server accepts; the message says why, for a 400."""


class JsonSyntaxError(ClientJsonError):
    """The bytes are not JSON (cut, not UTF-8, trailing data)."""


class JsonTooDeep(ClientJsonError):
    """Arrays and objects nested deeper than :data:`MAX_JSON_DEPTH`."""


class JsonNotUnicode(ClientJsonError):
    """A string holds a lone UTF-16 surrogate escape (``\\ud800``): valid JSON, not text."""


class JsonNulCharacter(ClientJsonError):
    """A string holds U+0000, which the PostgreSQL store cannot keep."""


def parse_client_json(data: bytes) -> Any:
    """Parse ``data`` exactly as ``json.loads`` would; raise a ``ClientJsonError`` for what the store cannot keep.

    orjson does the work when it agrees with ``json`` (several times faster on a 0.5 MB push body): it
    turns integers beyond 64 bits into floats (a 24-digit bank account number would lose digits) and
    refuses NaN literals, so a body with a run of 19+ digits, or one orjson refuses, goes through ``json``.
    """
    value: Any
    if _LONG_DIGIT_RUN not in data.translate(_DIGITS_ONLY):
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
        else:
            _check_depth(value)  # orjson refuses lone surrogates itself, and nests up to 1024 levels
            if _NUL_ESCAPE in data:
                _check_no_nul(value)
            return value
    try:
        value = json.loads(data.decode("utf-8"))
    except RecursionError:
        raise JsonTooDeep(f"arrays and objects nest deeper than {MAX_JSON_DEPTH} levels") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise JsonSyntaxError(str(exc)) from None
    _check_depth(value)
    if _SURROGATE_ESCAPE.search(data):
        _check_unicode(value)
    if _NUL_ESCAPE in data:
        _check_no_nul(value)
    return value


def _check_depth(value: Any) -> None:
    # Iterative on purpose: the point is to bound what recursive code sees later.
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise JsonTooDeep(f"arrays and objects nest deeper than {MAX_JSON_DEPTH} levels")
        for child in node.values() if isinstance(node, dict) else node if isinstance(node, list) else ():
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))


def _check_unicode(value: Any) -> None:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise JsonNotUnicode(
            "a string holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is not text: send UTF-8 or a pair"
        ) from None


def _check_no_nul(value: Any) -> None:
    # Reached only when the bytes hold the escape ``\\u0000`` (raw NUL bytes are not JSON).
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                raise JsonNulCharacter("a string holds U+0000 (\\u0000), which cannot be stored")
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
