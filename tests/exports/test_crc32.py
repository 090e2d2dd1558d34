"""``exports.crc32.crc32_combine``: the CRC of two byte strings joined, from theirs.

Rule checked:
- C1 for any byte strings ``a`` and ``b``, ``crc32_combine(crc32(a), crc32(b), len(b)) == crc32(a + b)``,
  long lengths included (a part of an export is megabytes long), and a chain of combines gives the CRC
  of all the parts joined.
"""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exports.crc32 import crc32_combine


@given(st.binary(max_size=300), st.binary(max_size=300))
def test_the_crc_of_two_strings_joined(first: bytes, second: bytes) -> None:
    assert crc32_combine(zlib.crc32(first), zlib.crc32(second), len(second)) == zlib.crc32(first + second)


@pytest.mark.parametrize("length", [1, 255, 4096, 1_000_003, 5 * 1024 * 1024 + 7])
def test_long_second_strings(length: int) -> None:
    first = b"SubmissionDate,coop_name\r\n"
    second = (b"2024-05-02,Tifawin\r\n" * (length // 20 + 1))[:length]
    assert crc32_combine(zlib.crc32(first), zlib.crc32(second), length) == zlib.crc32(first + second)


@given(st.lists(st.binary(max_size=200), max_size=6))
def test_a_chain_of_parts(parts: list[bytes]) -> None:
    total = 0
    for part in parts:
        total = crc32_combine(total, zlib.crc32(part), len(part))
    assert total == zlib.crc32(b"".join(parts))


def test_a_negative_length_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        crc32_combine(0, 0, -1)
