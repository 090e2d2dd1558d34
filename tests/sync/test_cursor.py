"""The opaque pull cursor: round trip, and any tampering or foreign key is refused."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.cursor import InvalidCursor, PullCursor, decode_cursor, encode_cursor

KEY = b"server-secret-for-tests"


@settings(deadline=None, max_examples=80)
@given(seq=st.integers(0, 2**62), scopes=st.text(max_size=20))
def test_cursor_round_trips(seq: int, scopes: str) -> None:
    token = encode_cursor(seq, KEY, scopes_hash=scopes)
    assert decode_cursor(token, KEY) == PullCursor(seq=seq, scopes_hash=scopes)
    assert "=" not in token and "+" not in token and "/" not in token  # safe in a query string


@settings(deadline=None, max_examples=80)
@given(seq=st.integers(0, 2**40), data=st.data())
def test_any_changed_character_is_detected(seq: int, data: st.DataObject) -> None:
    token = encode_cursor(seq, KEY)
    position = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(st.sampled_from("AQgw_-.x9").filter(lambda c: c != token[position]))
    tampered = token[:position] + replacement + token[position + 1 :]
    try:
        decoded = decode_cursor(tampered, KEY)
    except InvalidCursor:
        return
    # Base64 has slack bits in its last character: a change there may decode to the same bytes.
    assert decoded == PullCursor(seq=seq)


def forged(payload: dict[str, object]) -> str:
    raw = json.dumps(payload).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode() + "." + encode_cursor(0, KEY).split(".")[1]


@pytest.mark.parametrize(
    ("token", "key", "code"),
    [
        (encode_cursor(5, KEY), b"another-server", "bad_cursor_signature"),
        (forged({"v": 1, "seq": 999, "sc": ""}), KEY, "bad_cursor_signature"),
        ("", KEY, "malformed_cursor"),
        ("no-dot-here", KEY, "malformed_cursor"),
        ("a.b.c", KEY, "malformed_cursor"),
        ("!!!." + encode_cursor(0, KEY).split(".")[1], KEY, "malformed_cursor"),
    ],
    ids=["foreign-key", "forged-seq", "empty", "one-part", "three-parts", "not-base64"],
)
def test_bad_cursors_are_refused_with_a_code(token: str, key: bytes, code: str) -> None:
    with pytest.raises(InvalidCursor) as error:
        decode_cursor(token, key)
    assert error.value.code == code


def test_signed_payload_of_another_version_is_unsupported() -> None:
    import hashlib
    import hmac

    payload = json.dumps({"v": 2, "seq": 1, "sc": ""}).encode()
    signature = hmac.new(KEY, payload, hashlib.sha256).digest()
    token = ".".join(base64.urlsafe_b64encode(p).rstrip(b"=").decode() for p in (payload, signature))
    with pytest.raises(InvalidCursor) as error:
        decode_cursor(token, KEY)
    assert error.value.code == "unsupported_cursor"


def test_negative_seq_and_empty_key_are_programming_errors() -> None:
    with pytest.raises(ValueError):
        encode_cursor(-1, KEY)
    with pytest.raises(ValueError):
        encode_cursor(1, b"")
