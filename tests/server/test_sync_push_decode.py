"""Push bodies decode exactly as ``json.loads`` would, whichever parser did the work."""

from __future__ import annotations

import gzip
import json

import pytest

from server.db.engine import json_dumps
from server.services.sync_push import IncompleteBody, decode_body


@pytest.mark.parametrize(
    "body",
    [
        b'{"items": [{"data": {"rib": 123456789012345678901234}}]}',  # a bank account number as a number
        b'{"n": -9223372036854775809, "m": 18446744073709551616}',  # just beyond 64 bits either way
        b'{"a": NaN, "b": Infinity}',  # json accepts these literals, orjson does not
        '{"nom": "Fatima Zahra", "ville": "الرشيدية", "x": 0.1, "y": 1e-7, "z": [true, null]}'.encode(),
    ],
    ids=["24-digit-int", "beyond-64-bits", "nan-literals", "plain"],
)
def test_push_body_decodes_as_json_would(body: bytes) -> None:
    _, decoded = decode_body(body, "", 10**6)
    assert repr(decoded) == repr(json.loads(body))  # repr: NaN != NaN, and 1e23 vs int would compare equal


def test_gzip_body_with_long_integer_keeps_every_digit() -> None:
    body = b'{"v": 123456789012345678901234567890}'
    _, decoded = decode_body(gzip.compress(body), "gzip", 10**6)
    assert decoded["v"] == 123456789012345678901234567890 and isinstance(decoded["v"], int)


@pytest.mark.parametrize("body", [b'{"a": 1', b"\xff\xfe", b'{"a": 1}{'], ids=["cut", "not-utf8", "trailing"])
def test_broken_bodies_are_incomplete(body: bytes) -> None:
    with pytest.raises(IncompleteBody):
        decode_body(body, "", 10**6)


@pytest.mark.parametrize(
    "value",
    [{"a": "é", "b": [1, 2.5, None, True]}, {"big": 2**70}, {1: "int key"}, "الرشيدية"],
    ids=["plain", "big-int", "int-key", "arabic"],
)
def test_json_columns_serialise_to_what_json_reads_back(value: object) -> None:
    expected = json.loads(json.dumps(value))
    assert json.loads(json_dumps(value)) == expected
