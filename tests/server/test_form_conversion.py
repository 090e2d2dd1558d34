"""The warm converter processes (server/services/form_conversion.py), with real child processes.

Rules:
- WARM-1 conversions in a row reuse one warm child: no process start after the first, and the result is
  ``convert_upload``'s.
- WARM-2 a form pyxform refuses answers its ``FormError`` and leaves the child warm.
- WARM-3 past the time limit the child is killed (its process is gone) and ``ConversionTimeout`` says
  the limit; the next conversion starts a new child and succeeds.
- WARM-4 conversions at once never share a child; only ``keep_idle`` children stay warm afterwards, and
  a child that has served ``max_uses`` conversions is retired.
- WARM-6 a child idle for ``idle_seconds`` is stopped, and with the last one the forkserver it was forked
  from (no process of the conversions is left); the next conversion starts them again and succeeds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from forms.convert import convert_upload
from forms.errors import FormError
from server.services.form_conversion import ConversionTimeout, WarmConverters
from tests.server.fixtures_forms import media_form, xlsform

BROKEN = """
| survey |
|        | type        | name | label |
|        | select_one  | q1   | Q1    |
"""


@pytest.fixture
def converters() -> Iterator[WarmConverters]:
    pool = WarmConverters(keep_idle=1, max_uses=3)
    try:
        yield pool
    finally:
        pool.close()


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_warm_1_one_child_serves_conversions_in_a_row(converters: WarmConverters) -> None:
    first = converters.convert(media_form("1"), "m.xlsx", timeout=60)
    pids = converters.idle_pids()
    second = converters.convert(media_form("2"), "m.xlsx", timeout=60)
    assert converters.started == 1
    assert converters.idle_pids() == pids
    assert second.converted == convert_upload(media_form("2"), "m.xlsx")
    assert first.converted.schema.version == "1"


def test_warm_2_a_refused_form_keeps_the_child(converters: WarmConverters) -> None:
    converters.convert(media_form(), "m.xlsx", timeout=60)
    with pytest.raises(FormError) as refused:
        converters.convert(xlsform(BROKEN), "broken.xlsx", timeout=60)
    assert refused.value.code == "xlsform_invalid"
    assert converters.started == 1
    assert converters.idle() == 1


def test_warm_3_timeout_kills_the_child(converters: WarmConverters) -> None:
    converters.convert(media_form(), "m.xlsx", timeout=60)
    (pid,) = converters.idle_pids()
    with pytest.raises(ConversionTimeout) as late:
        converters.convert(media_form("2"), "m.xlsx", timeout=0.001)
    assert late.value.limit_seconds == 0.001
    assert _gone(pid)
    assert converters.idle() == 0
    again = converters.convert(media_form("3"), "m.xlsx", timeout=60)
    assert again.converted.schema.version == "3"
    assert converters.started == 2


def test_warm_4_concurrent_conversions_never_share_a_child(converters: WarmConverters) -> None:
    bodies = [media_form(str(n)) for n in range(3)]
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda body: converters.convert(body, "m.xlsx", timeout=60), bodies))
    assert [r.converted.schema.version for r in results] == ["0", "1", "2"]
    assert converters.idle() == 1
    (pid,) = converters.idle_pids()
    for n in range(3):  # max_uses=3: the kept child retires after its third conversion at most
        converters.convert(media_form(str(n)), "m.xlsx", timeout=60)
    assert pid not in converters.idle_pids()


class _LateReader:
    """The parent's end of a real pipe, read by a thread that a busy host descheduled before it polled."""

    def __init__(self, conn: object, delay: float) -> None:
        self._conn, self._delay = conn, delay

    def poll(self, timeout: float) -> bool:
        import time

        time.sleep(self._delay)  # the child answers meanwhile: its reply is waiting when the poll starts
        return bool(self._conn.poll(timeout))  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self._conn, name)


def test_warm_5_a_reply_found_after_the_limit_is_a_timeout(converters: WarmConverters) -> None:
    converters.convert(media_form(), "m.xlsx", timeout=60)  # a warm child: the next conversion is quick
    (worker,) = converters._idle
    (pid,) = converters.idle_pids()
    worker.conn = _LateReader(worker.conn, delay=1.0)  # type: ignore[assignment]
    with pytest.raises(ConversionTimeout) as late:
        converters.convert(media_form("2"), "m.xlsx", timeout=0.5)
    assert late.value.limit_seconds == 0.5
    assert late.value.elapsed_seconds >= 1.0
    assert _gone(pid)
    assert converters.idle() == 0


def test_warm_6_idle_children_and_their_forkserver_are_stopped() -> None:
    from multiprocessing import forkserver

    pool = WarmConverters(keep_idle=1, max_uses=10, idle_seconds=0.3)
    try:
        pool.convert(media_form("1"), "m.xlsx", timeout=60)
        child = pool.idle_pids()[0]
        server = forkserver._forkserver._forkserver_pid  # type: ignore[attr-defined]
        assert server is not None and not _gone(server)
        for _ in range(200):  # the timer's due after 0.3 s; a test never measures it, so allow plenty
            if pool.retired:
                break
            time.sleep(0.05)
        assert pool.retired == 1 and pool.idle() == 0
        assert _gone(child)
        assert _gone(server) and forkserver._forkserver._forkserver_pid is None  # type: ignore[attr-defined]
        again = pool.convert(media_form("2"), "m.xlsx", timeout=60)
        assert again.converted.schema.version == "2"
        assert pool.started == 2
    finally:
        pool.close()
