"""Records read in parts by helper processes: one large export on several cores.

An export's Python work per record (decoding it, making its rows, formatting CSV) holds the GIL, so
one process uses one core whatever its threads. A store that can hand out its records in parts (ranges
of submissions, every part read in the same snapshot) gives a ``SplitRecords``; ``in_processes`` then
forks helper processes that each read and format their share of the parts while the exporting process
only stitches the results together, in part order.

Helpers are forked (not spawned): they start in milliseconds with the exporting process's plan, row
builder and options already in memory, and share its pages copy-on-write. Forking a threaded web
worker that holds database connections is safe here because a helper touches nothing it inherited but
what ``work`` uses: never a connection of the parent (``SplitRecords.read`` opens its own), no lock
another thread may have held (the allocator's, the import lock and the executors' are reset at fork),
no cyclic garbage collection (which could finalise the parent's objects), and it ends with
``os._exit``, so none of the parent's clean-ups run in it; psycopg's connections only close when
freed in the process that opened them. A live server test forks helpers while other threads write.
Each helper owns every
``processes``-th part and sends each result through its own pipe; a full pipe stops it, so at most one
result per helper waits in memory. A helper that fails sends its error, which the parent raises; a
parent that stops reading (a client gone) kills its helpers.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from multiprocessing.connection import Connection
from typing import Any, Generic, TypeVar

from exports.records import ExportRecord

Part = TypeVar("Part")
Result = TypeVar("Result")


class PartFailed(RuntimeError):
    """A helper process could not produce its part (the export is incomplete)."""


class SplitRecords(ABC, Generic[Part], Iterable[ExportRecord]):
    """Records that can also be read in parts, each part by another process, all in one snapshot.

    Iterating reads every record in this process, in order (what a small export does). ``split``
    returns the parts in export order (fewer than two: read by iterating); after it, ``read(part)``
    runs in a helper process and ``finish`` once there after its last part. ``close`` ends the read in
    this process; it is called once every helper has read its first part (the snapshot the parts share
    is theirs by then) and again when the export ends, so it must do nothing the second time.
    """

    processes: int = 1

    @abstractmethod
    def split(self) -> Sequence[Part]:
        """The parts, in export order; an empty list when the records must be read by iterating."""

    @abstractmethod
    def read(self, part: Part) -> Iterable[ExportRecord]:
        """The records of one part, in export order (runs in a helper process)."""

    def finish(self) -> None:  # optional: nothing to release by default
        """Release what ``read`` opened in this helper process (called after its last part)."""

    def close(self) -> None:  # optional: nothing to release by default
        """End the read in the exporting process (after the last part, or when the export stops)."""


def in_processes(
    parts: Sequence[Part], work: Callable[[Part], Result], processes: int, finish: Callable[[], None] = lambda: None
) -> Iterator[Result]:
    """Yield ``work(part)`` for every part, in order, computed by ``processes`` forked helpers.

    Helper ``k`` computes parts ``k``, ``k + processes``, … and calls ``finish`` after its last one.
    Raises ``PartFailed`` when a helper fails or dies; closing the iterator early kills the helpers.
    """
    context = multiprocessing.get_context("fork")
    count = max(1, min(processes, len(parts)))
    helpers: list[tuple[Any, Connection]] = []
    done = False
    try:
        for k in range(count):
            receiver, sender = context.Pipe(duplex=False)
            helper = context.Process(
                target=_serve, args=(sender, parts[k::count], work, finish), name=f"export-part-{k}", daemon=True
            )
            with warnings.catch_warnings():
                # Python 3.12+ warns on every fork of a process with threads (a gunicorn worker has some): a
                # child may deadlock on a lock another thread held. A helper takes none of those (module
                # docstring); the locks it does take (allocator, imports, executors) are reset at fork.
                warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)
                helper.start()
            sender.close()  # the helper holds the only sending end: its death ends the pipe
            helpers.append((helper, receiver))
        for index in range(len(parts)):
            helper, receiver = helpers[index % count]
            try:
                ok, value = receiver.recv()
            except EOFError:
                helper.join(timeout=1.0)
                raise PartFailed(
                    f"export helper {helper.name} ended before part {index + 1} (exit code {helper.exitcode})"
                ) from None
            if not ok:
                raise PartFailed(f"export helper {helper.name} failed on part {index + 1}: {value}")
            yield value
        done = True
    finally:
        for helper, receiver in helpers:
            receiver.close()
            if not done:
                helper.kill()
            helper.join()


def _serve(sender: Connection, parts: Sequence[Any], work: Callable[[Any], Any], finish: Callable[[], None]) -> None:
    """A helper's life: compute its parts in order, send each result (or the first error), then end."""
    # No cyclic collection here: it could finalise garbage the parent left (a pooled database connection
    # returned by its finaliser would send a ROLLBACK down a socket the parent owns). A helper's own
    # cycles are few and its life short; it frees everything by exiting.
    gc.disable()
    try:
        for part in parts:
            sender.send((True, work(part)))
    except BrokenPipeError:
        pass  # the exporting process stopped reading: nobody is left to tell
    except BaseException as exc:  # whatever it is, the parent must hear of it
        with contextlib.suppress(OSError):
            sender.send((False, f"{type(exc).__name__}: {exc}"))
    finally:
        with contextlib.suppress(Exception):  # the results are sent: a failed clean-up changes nothing
            finish()
        sender.close()
