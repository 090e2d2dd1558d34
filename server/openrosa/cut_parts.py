"""The complete parts of a cut multipart body: what an OpenRosa POST cut mid-way still delivered.

A phone on 2G loses the link in the middle of a POST. The parts whose closing boundary arrived are
whole (a multipart boundary cannot appear inside a part), so the XML and every file before the cut
can be kept; the part in progress at the cut is dropped. Parsed with werkzeug's event decoder, fed
everything that arrived and never told the body ended, so a part is only reported once complete.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import IO

from werkzeug.datastructures import FileStorage
from werkzeug.sansio.multipart import Data, Field, File, MultipartDecoder, NeedData

READ = 64 * 1024
IN_MEMORY = 1024 * 1024


@dataclass
class CutBody:
    """What a cut POST delivered whole: its fields (name → bytes) and its files (staged by the caller)."""

    fields: dict[str, bytes]
    files: list[FileStorage]

    def close(self) -> None:
        """Remove the temporary copies of the files."""
        for storage in self.files:
            storage.stream.close()


def complete_parts(stream: IO[bytes], boundary: bytes, max_field_bytes: int) -> CutBody:
    """Read ``stream`` (what arrived of a multipart body) and return its complete parts.

    A field part larger than ``max_field_bytes`` is dropped (a file part has no limit here: the
    caller's staging enforces its own).
    """
    decoder = MultipartDecoder(boundary)
    body = CutBody({}, [])
    current: File | Field | None = None
    sink: IO[bytes] | None = None
    size = 0

    def finish() -> None:
        nonlocal sink
        if isinstance(current, File) and sink is not None:
            sink.seek(0)
            body.files.append(FileStorage(sink, current.filename, current.name, headers=current.headers))
        elif isinstance(current, Field) and sink is not None and size <= max_field_bytes:
            sink.seek(0)
            body.fields[current.name] = sink.read()
            sink.close()
        elif sink is not None:
            sink.close()
        sink = None

    try:
        while chunk := stream.read(READ):
            decoder.receive_data(chunk)
            while not isinstance(event := decoder.next_event(), NeedData):
                if isinstance(event, File | Field):
                    current, size = event, 0
                    sink = tempfile.SpooledTemporaryFile(IN_MEMORY)  # noqa: SIM115  (closed by finish/close)
                elif isinstance(event, Data) and sink is not None:
                    size += len(event.data)
                    if isinstance(current, File) or size <= max_field_bytes:
                        sink.write(event.data)
                    if not event.more_data:
                        finish()
                # Preamble and Epilogue carry nothing to keep.
    except ValueError:
        pass  # bytes that are not multipart past this point: keep what was complete before them
    if sink is not None:
        sink.close()  # the part the cut went through
    return body


def boundary_of(mimetype_params: dict[str, str]) -> bytes | None:
    """The boundary of a ``multipart/form-data`` Content-Type, if it names one."""
    value = mimetype_params.get("boundary")
    return value.encode("latin-1") if value else None
