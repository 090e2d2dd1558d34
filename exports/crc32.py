"""CRC-32 of two byte strings joined, from the CRC of each and the second one's length (zlib's crc32_combine).

A zip member's checksum covers all of its bytes; when helper processes deflate the parts of one member
(``exports.csv_zip``), each knows only its own part's CRC. Python's ``zlib`` module does not expose
``crc32_combine``, so this is the same arithmetic: appending ``n`` bytes to a string changes its CRC
register by a linear map over GF(2) (the register run through ``n`` zero bytes), then XORs in the CRC of
the appended bytes. The map for ``2**k`` zero bytes is a 32×32 bit matrix (one int per column), squared
from the one for a single zero bit; a combine applies at most one matrix per set bit of ``n``.
"""

from __future__ import annotations

from functools import cache

_POLYNOMIAL = 0xEDB88320  # CRC-32 (IEEE 802.3), reflected, as zlib and zip use it


def _apply(matrix: tuple[int, ...], vector: int) -> int:
    """The matrix (its columns as ints) times a 32-bit vector, over GF(2)."""
    total = 0
    column = 0
    while vector:
        if vector & 1:
            total ^= matrix[column]
        vector >>= 1
        column += 1
    return total


def _square(matrix: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(_apply(matrix, matrix[column]) for column in range(32))


@cache
def _zero_bytes(power: int) -> tuple[int, ...]:
    """The register's map for ``2**power`` zero bytes."""
    if power == 0:
        one_bit = (_POLYNOMIAL, *(1 << n for n in range(31)))
        return _square(_square(_square(one_bit)))  # 1 bit -> 2 -> 4 -> 8 bits: one byte
    return _square(_zero_bytes(power - 1))


def crc32_combine(first: int, second: int, second_length: int) -> int:
    """``zlib.crc32(a + b)`` from ``zlib.crc32(a)``, ``zlib.crc32(b)`` and ``len(b)``."""
    if second_length < 0:
        raise ValueError("a length is never negative")
    register = first
    power = 0
    while second_length:
        if second_length & 1:
            register = _apply(_zero_bytes(power), register)
        second_length >>= 1
        power += 1
    return register ^ second
