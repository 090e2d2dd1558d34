"""An export streams with the cyclic garbage collector paused, and turns it back on however it ends.

Rules: the collector is off from the first chunk to the last; it is on again once the stream is
exhausted or closed early (a client that hangs up); streams running together share the pause and the
last to end turns the collector back on; a collector turned off by someone else stays off.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from server.services.exports import _cyclic_gc_paused


def _watched(seen: list[bool], n: int = 3) -> Iterator[bytes]:
    for i in range(n):
        seen.append(gc.isenabled())
        yield bytes([i])


@pytest.fixture(autouse=True)
def _collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if was:
        gc.enable()
    else:
        gc.disable()


def test_the_collector_is_off_while_chunks_are_made_and_on_after() -> None:
    seen: list[bool] = []
    assert b"".join(_cyclic_gc_paused(_watched(seen))) == b"\x00\x01\x02"
    assert seen == [False, False, False]
    assert gc.isenabled()


def test_a_stream_closed_early_turns_the_collector_back_on() -> None:
    stream = _cyclic_gc_paused(_watched([]))
    next(stream)
    assert not gc.isenabled()
    stream.close()
    assert gc.isenabled()


def test_streams_running_together_share_the_pause() -> None:
    first, second = _cyclic_gc_paused(_watched([])), _cyclic_gc_paused(_watched([]))
    next(first)
    next(second)
    first.close()
    assert not gc.isenabled()
    list(second)
    assert gc.isenabled()


def test_a_collector_turned_off_elsewhere_stays_off() -> None:
    gc.disable()
    list(_cyclic_gc_paused(_watched([])))
    assert not gc.isenabled()
