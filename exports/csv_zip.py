"""The CSV zip export: one CSV per table, ``cleaning_report.csv`` and ``README.txt``, streamed.

Records are read once. The root table is written straight into its zip member (ZIP_DEFLATED) as rows
arrive, so ``iter_csv_zip``'s first bytes leave after the first rows (an idle-timeout proxy never sees a
silent response); each repeat table is deflated as it comes into its own spooled temporary file (in
memory up to ``SPOOL_MAX_BYTES``, then on disk) and copied into the zip after the root table, in chunks.
Deflating runs on a helper thread, beside the formatting of the next rows (zlib releases the GIL). Memory
does not grow with the number of submissions. ``write_csv_zip`` writes to any binary file object
(seekable or not); ``iter_csv_zip`` yields the zip as ``bytes`` chunks for a streamed HTTP response. An
error while reading records leaves an incomplete zip (callers writing files use a temporary name).

CSV dialect: RFC 4180 (comma, ``"`` quoting when needed, CRLF line ends), UTF-8, with a BOM when the
``bom`` option is on (Excel needs it to read UTF-8 Arabic/French correctly). A cell a spreadsheet could
run as a formula gets a leading apostrophe (``exports.spreadsheet_formulas``), counted in the report.
"""

from __future__ import annotations

import csv
import io
import re
import threading
import time
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, fields
from functools import partial
from tempfile import SpooledTemporaryFile
from typing import IO, Any, BinaryIO

from exports.cleaning import CleaningReport, ReportKey
from exports.crc32 import crc32_combine
from exports.options import ExportOptions
from exports.parts import SplitRecords, in_processes
from exports.records import ExportRecord
from exports.rows import ExportSummary, _RowBuilder, row_builder, summarise
from exports.spreadsheet_formulas import STEP as FORMULA_STEP
from exports.spreadsheet_formulas import neutralise, neutralise_column, neutralise_row, numeric_columns
from exports.tables import ExportPlan, TablePlan, plan_tables
from forms.schema import FormSchema

SPOOL_MAX_BYTES = 256 * 1024  # per repeat table; beyond this it lives in a temporary file on disk
COPY_CHUNK_BYTES = 64 * 1024
FLUSH_ROWS = 256  # rows formatted in memory between two writes to a table's file or zip member (XLSX)
# Rows formatted between two hand-offs to the deflating thread: each hand-off waits for that thread to get
# the GIL back (up to the 5 ms switch interval), so batches of ~0.5 MB of text keep it from lagging.
DEFLATE_ROWS = 1024
# zlib level 3, not the default 6: measured on the bench export (10,000 submissions, 15.6 MB of CSV),
# deflate took 122 ms instead of 275 ms (a sixth of the whole export) for a zip 19% larger (2.6 MB, not 2.2).
COMPRESS_LEVEL = 3
BOM = b"\xef\xbb\xbf"
REPORT_FILE = "cleaning_report.csv"
README_FILE = "README.txt"
MEDIA_FOLDER = "media"  # the submissions' files, as ODK Central names the folder


class _CsvLine:
    """Formats one row as CSV bytes, reusing one small text buffer."""

    def __init__(self) -> None:
        self._buf = io.StringIO()
        self._writer = csv.writer(self._buf, lineterminator="\r\n")

    def encode(self, row: Sequence[str]) -> bytes:
        self._buf.seek(0)
        self._buf.truncate()
        self._writer.writerow(row)
        return self._buf.getvalue().encode("utf-8")


def zip_member(zf: zipfile.ZipFile, name: str) -> zipfile.ZipInfo:
    """Return a streamed entry stamped with the time of writing (``ZipFile.open`` alone stamps 1980)."""
    info = zipfile.ZipInfo(name, date_time=time.localtime()[:6])
    info.compress_type = zf.compression
    info._compresslevel = zf.compresslevel  # type: ignore[attr-defined]  # a hand-made ZipInfo has none
    return info


def csv_line(cells: Sequence[str]) -> str:
    """One row as RFC 4180 text without its line end, exactly as ``csv.writer`` (QUOTE_MINIMAL) writes it.

    A cell is quoted when it holds a comma, a quote (doubled) or a line break, like ``csv.writer`` with
    ``lineterminator="\\r\\n"``; one pass of ``in`` checks per cell costs about half of ``writerow``.
    """
    if len(cells) < 2:  # csv.writer writes a lone empty cell as "": leave such rows to it
        return _CsvLine().encode(cells).decode("utf-8").removesuffix("\r\n")
    return ",".join(_quoted(cells))


def _quoted(cells: Iterable[str]) -> list[str]:
    """The cells, each quoted when it holds a comma, a quote (doubled) or a line break."""
    return [
        ('"' + c.replace('"', '""') + '"') if ("," in c or '"' in c or "\n" in c or "\r" in c) else c for c in cells
    ]


def csv_lines(
    rows: Sequence[Sequence[str]], numeric: Mapping[int, re.Pattern[str]], escaped: Counter[int]
) -> list[str]:
    """Rows of one table as CSV lines (no line ends), formula-like cells escaped: ``neutralise_row`` + ``csv_line``.

    Column by column rather than cell by cell: each column's first characters and text are joined once
    and searched in C, so only the columns holding a trigger, a comma, a quote or a line break (free text,
    mostly) take a Python step per cell; the lines are then joined row by row in C. The same bytes as
    ``csv_line`` after ``neutralise_row`` on each row; rows of unequal widths (never made by this
    package) take that path.
    """
    if not rows:
        return []
    width = len(rows[0])
    if width < 2 or any(len(r) != width for r in rows):  # zip() would drop the cells past the shortest row
        out = []
        for row in rows:
            cells = list(row)
            neutralise_row(cells, numeric, escaped)
            out.append(csv_line(cells))
        return out
    columns: list[list[str]] = []
    for i, column in enumerate(zip(*rows, strict=True)):
        cells = list(column)
        n = neutralise_column(cells, numeric.get(i))
        if n:
            escaped[i] += n
        text = "".join(cells)
        if "," in text or '"' in text or "\n" in text or "\r" in text:
            cells = _quoted(cells)
        columns.append(cells)
    return list(map(",".join, zip(*columns, strict=True)))


class _TableText:
    """One table's rows as CSV text lines, handed on as UTF-8 by ``take``.

    Rows are held as they come and formatted together (``csv_lines``) when taken: formatting, encoding
    and writing many rows at once costs far less than row by row; at most ``DEFLATE_ROWS`` rows are
    held, so memory stays flat.
    """

    def __init__(self, table: TablePlan, plan: ExportPlan, bom: bool, header: bool = True) -> None:
        self.lines: list[str] = []
        self.rows: list[list[str]] = []
        self.count = 0  # rows taken so far
        self.bom = "\ufeff" if bom else ""  # UTF-8 encodes it as the BOM bytes
        self.numeric = numeric_columns(table, plan.fields)
        self.escaped: Counter[int] = Counter()  # formula-like cells escaped, by column index
        if header:  # a part's text has none: the whole table's comes first
            self.lines.append(csv_line([neutralise(h) for h in table.headers]))

    def take(self) -> bytes:
        """The lines formatted since the last call, as UTF-8 with their CRLFs (empty when there are none)."""
        if self.rows:
            self.lines += csv_lines(self.rows, self.numeric, self.escaped)
            self.count += len(self.rows)
            self.rows.clear()
        if not self.lines:
            return b""
        self.lines.append("")  # every line ends with CRLF
        out = (self.bom + "\r\n".join(self.lines)).encode("utf-8")
        self.bom = ""
        self.lines.clear()
        return out


class _DeflatedSpool:
    """A repeat table deflated as its rows come, kept (in memory, then on disk) until its zip member is written.

    The zip takes the root table first, so a repeat table waits; waiting deflated, it writes a seventh of
    the bytes to the temporary file and nothing is left to deflate once the root table is done.
    """

    def __init__(self) -> None:
        self.file: IO[bytes] = SpooledTemporaryFile(max_size=SPOOL_MAX_BYTES)  # noqa: SIM115  # closed by close()
        # What zipfile's own deflating member uses: raw deflate (no zlib header) at the export's level.
        self.compressor = zlib.compressobj(COMPRESS_LEVEL, zlib.DEFLATED, -15)
        self.crc = 0
        self.size = 0

    def write(self, data: bytes) -> None:
        self.crc = zlib.crc32(data, self.crc)
        self.size += len(data)
        self.file.write(self.compressor.compress(data))

    def write_deflated(self, chunk: _Deflated) -> None:
        """Append a chunk deflated elsewhere (never mixed with ``write``: the compressor holds no pending bytes)."""
        self.crc = crc32_combine(self.crc, chunk.crc, chunk.size)
        self.size += chunk.size
        self.file.write(chunk.data)

    def copy_into(self, zf: zipfile.ZipFile, name: str) -> Iterator[None]:
        """Write the spool as the deflated member ``name``; yield after each chunk so callers can drain.

        zipfile has no public way to take data already deflated, so the member's writer is handed the
        compressor, checksum and sizes it would have computed itself from the same text (the attributes of
        ``zipfile._ZipWriteFile`` since Python 3.6); closing it flushes the compressor and writes the data
        descriptor. ``test_every_entry_is_deflated_at_the_export_level`` checks the result.
        """
        self.file.seek(0)
        with zf.open(zip_member(zf, name), "w", force_zip64=True) as member:
            written = 0
            while chunk := self.file.read(COPY_CHUNK_BYTES):
                member._fileobj.write(chunk)  # type: ignore[attr-defined]
                written += len(chunk)
                yield
            member._compressor = self.compressor  # type: ignore[attr-defined]
            member._compress_size = written  # type: ignore[attr-defined]
            member._crc = self.crc  # type: ignore[attr-defined]
            member._file_size = self.size  # type: ignore[attr-defined]

    def close(self) -> None:
        self.file.close()


class _DeflateBehind:
    """Runs each batch of writes (to zip members and deflated spools) on a helper thread, one batch behind.

    zlib releases the GIL while it deflates (and while it checksums a large buffer), so compression, a
    sixth of an export's CPU, runs beside the formatting of the next rows instead of after it. One batch
    at most is in flight: chunks reach their files in order and memory stays flat.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zip-deflate")
        self._pending: Future[None] | None = None

    def __call__(self, writes: list[tuple[Callable[[Any], object], Any]]) -> None:
        self.wait()
        self._pending = self._pool.submit(_write_all, writes)

    def wait(self) -> None:
        """Return once the batch in flight is written (raising what writing it raised)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        """Wait for the batch in flight, then end the helper thread."""
        try:
            self.wait()
        finally:
            self._pool.shutdown()


def _write_all(writes: list[tuple[Callable[[Any], object], Any]]) -> None:
    for write, data in writes:
        if data:
            write(data)


def report_csv(report: CleaningReport, options: ExportOptions) -> bytes:
    """The cleaning report as CSV bytes: ``table, column, step, count``."""
    line = _CsvLine()
    out = (BOM if options.bom else b"") + line.encode(["table", "column", "step", "count"])
    return out + b"".join(line.encode([neutralise(t), neutralise(c), s, str(n)]) for t, c, s, n in report.rows())


def readme_text(plan: ExportPlan, options: ExportOptions, summary: ExportSummary) -> str:
    """The README.txt describing tables, keys, options and cleaning of this export."""
    lines = [
        f"Fieldsync export of form {plan.form_id}",
        "",
        "Tables (UTF-8 CSV, one row per submission or per repeat instance):",
    ]
    for table, ts in zip(plan.tables, summary.tables, strict=True):
        what = "one row per submission" if table.repeat_path is None else f"one row per '{table.repeat_path}'"
        lines.append(f"- {table.file_name}: {what}, {ts.rows} rows, {ts.columns} columns")
    lines += [
        "",
        "Keys:",
        "- KEY of the form table is the submission's instanceID.",
        "- KEY of a repeat row is <parent KEY>/<repeat path>[n] (n counts from 1);",
        "  PARENT_KEY is the KEY of the row it belongs to (the submission or the enclosing repeat row).",
        "- SubmissionDate is the server's receipt time in UTC; FormVersion the version the data was sent",
        "  with.",
        "",
        "Options used:",
    ]
    for opt in fields(options):
        value = getattr(options, opt.name)
        if isinstance(value, frozenset):
            value = ",".join(sorted(value)) or "(all)"
        lines.append(f"- {opt.name}: {value}")
    lines += [
        "",
        "Cleaning" + (" (on):" if options.clean else " (off: values exactly as sent, problems still flagged):"),
        "- Text: Unicode NFC; spaces trimmed and runs of spaces collapsed (newlines kept).",
        "- Numbers: decimal comma to point (1,5 -> 1.5), space-grouped thousands joined, '+' and leading",
        "  zeros dropped; integers stay integers; ambiguous forms (1.234,5) are flagged, not guessed.",
        "- Dates YYYY-MM-DD; times and dateTimes ISO 8601 with milliseconds and the device's own offset",
        "  (+03 -> +03:00); nothing is converted to another time zone.",
        "- A value that does not fit its type or the form's choices is kept as sent and described in the",
        "  _issues column of its row.",
        "- Superseded edits, deleted and rejected submissions are left out unless included by option.",
        "- A text cell starting with = + - @ (or a tab or line break) gets a leading ' so that spreadsheets",
        "  show it as text instead of running it as a formula (step 'formula_escaped'); numbers in numeric",
        "  columns, such as -2.5, are left as numbers.",
        f"Every change is counted per table, column and step in {REPORT_FILE}; rows left out are counted",
        "there with step 'excluded:<reason>'.",
        "",
        f"Submissions read: {summary.records_read}; exported: {summary.records_exported}.",
    ]
    for reason, n in sorted(summary.excluded.items()):
        lines.append(f"- left out ({reason}): {n}")
    return "\r\n".join(lines) + "\r\n"


@dataclass(frozen=True, slots=True)
class _Deflated:
    """Text deflated on its own (raw deflate, ``COMPRESS_LEVEL``) and ended by a sync flush, with its CRC and size.

    A sync flush ends on a byte boundary without ending the stream, so such chunks, deflated by different
    compressors, follow each other in one zip member; the member's own (unused) compressor writes the
    final empty block when it is closed.
    """

    data: bytes
    crc: int
    size: int


def _deflate(text: Iterable[bytes]) -> _Deflated:
    compressor = zlib.compressobj(COMPRESS_LEVEL, zlib.DEFLATED, -15)
    out: list[bytes] = []
    crc = size = 0
    for chunk in text:
        crc = zlib.crc32(chunk, crc)
        size += len(chunk)
        out.append(compressor.compress(chunk))
    out.append(compressor.flush(zlib.Z_SYNC_FLUSH))
    return _Deflated(b"".join(out), crc, size)


def _write_deflated(member: IO[bytes], chunk: _Deflated) -> None:
    """Append a chunk deflated elsewhere to a zip member open for writing (zipfile's ``_ZipWriteFile``).

    The member's own compressor and checksum are left aside as in ``_DeflatedSpool.copy_into``: the
    chunk goes to the zip's file as it is, the member's CRC and sizes are moved on by it.
    """
    writer: Any = member
    writer._fileobj.write(chunk.data)
    writer._compress_size += len(chunk.data)
    writer._crc = crc32_combine(writer._crc, chunk.crc, chunk.size)
    writer._file_size += chunk.size


@dataclass(frozen=True, slots=True)
class _PartText:
    """One part of the records, formatted and deflated by a helper process, with the counts."""

    data: list[_Deflated]  # per table: its CSV lines (no header), deflated
    rows: list[int]  # per table: rows written
    escaped: list[Counter[int]]  # per table: formula-like cells escaped, by column index
    records_read: int
    changes: Counter[ReportKey]
    excluded: Counter[str]


def _format_part(plan: ExportPlan, builder: _RowBuilder, records: Iterable[ExportRecord]) -> _PartText:
    """Make, format and deflate the rows of ``records`` as ``_zip_members`` does, for the exporting process."""
    report = CleaningReport()
    tables = [_TableText(table, plan, bom=False, header=False) for table in plan.tables]
    chunks: list[list[bytes]] = [[] for _ in tables]
    for _ in _formatted_rows(records, builder, tables, report):  # formatted in batches, as in one process
        for chunk, text in zip(chunks, tables, strict=True):
            chunk.append(text.take())
    for chunk, text in zip(chunks, tables, strict=True):
        chunk.append(text.take())
    return _PartText(
        [_deflate(chunk) for chunk in chunks],
        [t.count for t in tables],
        [t.escaped for t in tables],
        report.records_read,
        report.changes,
        report.excluded,
    )


def _parts_of(records: Iterable[ExportRecord]) -> Sequence[object]:
    """The parts helper processes are to read, or none (records read here): two or more, more than one process."""
    if not isinstance(records, SplitRecords) or records.processes < 2:
        return ()
    parts = records.split()
    return parts if len(parts) > 1 else ()


def _formatted_rows(
    records: Iterable[ExportRecord], builder: _RowBuilder, tables: list[_TableText], report: CleaningReport
) -> Iterator[None]:
    """Feed every record's rows to ``tables``, in this process, yielding every ``DEFLATE_ROWS`` rows."""
    writers = [t.rows.append for t in tables]  # the rows are formatted together by take()
    pending = 0
    for rec in records:  # export_rows, one submission's rows at a time
        report.records_read += 1
        rows = builder.rows(rec, report)
        for index, cells in rows:
            writers[index](cells)
        pending += len(rows)
        if pending >= DEFLATE_ROWS:
            pending = 0
            yield


def _deflated_parts(
    records: SplitRecords[Any],
    parts: Sequence[object],
    plan: ExportPlan,
    builder: _RowBuilder,
    tables: list[_TableText],
    report: CleaningReport,
) -> Iterator[list[_Deflated]]:
    """Each table's chunks in zip order: its header (deflated here), then every part's rows (by helpers).

    The parts' counts (rows, escaped formula cells, the cleaning report) are added to ``tables`` and
    ``report`` exactly as if this process had made the rows.
    """
    yield [_deflate([t.take()]) for t in tables]  # BOM and header line, before any part

    def work(part: object) -> _PartText:
        return _format_part(plan, builder, records.read(part))

    started = min(records.processes, len(parts))
    for done, text in enumerate(in_processes(parts, work, records.processes, records.finish), 1):
        if done == started:  # every helper has read a part: what they share (a snapshot) may end here
            records.close()
        report.records_read += text.records_read
        report.changes.update(text.changes)
        report.excluded.update(text.excluded)
        for table, count, escaped in zip(tables, text.rows, text.escaped, strict=True):
            table.count += count
            table.escaped.update(escaped)
        yield text.data


def _zip_members(
    zf: zipfile.ZipFile,
    plan: ExportPlan,
    options: ExportOptions,
    records: Iterable[ExportRecord],
    report: CleaningReport,
    done: list[ExportSummary],
) -> Iterator[None]:
    """Write the whole zip into ``zf``; yield after every write so callers can drain; append the summary.

    The root table goes straight into its zip member as records are read (the first bytes leave after
    the first rows, not after the whole export); repeat tables are spooled deflated, then copied in after it.
    Member order is unchanged: root table, repeat tables in plan order, report, README.
    """
    spools: list[_DeflatedSpool] = []
    try:
        tables = [_TableText(table, plan, options.bom) for table in plan.tables]
        builder = row_builder(plan, options)
        with zf.open(zip_member(zf, plan.tables[0].file_name), "w", force_zip64=True) as root:
            # Until the root member is closed, only the helper thread writes to the zip (and its sink).
            deflate = _DeflateBehind()
            try:
                spools.extend(_DeflatedSpool() for _ in plan.tables[1:])
                parts = _parts_of(records)
                if parts:  # formatted and deflated by helper processes (exports.parts)
                    assert isinstance(records, SplitRecords)
                    sinks: list[Callable[[Any], object]] = [
                        partial(_write_deflated, root),
                        *(spool.write_deflated for spool in spools),
                    ]
                    for chunks in _deflated_parts(records, parts, plan, builder, tables, report):
                        deflate(list(zip(sinks, chunks, strict=True)))
                        yield
                else:
                    targets: list[Callable[[Any], object]] = [root.write, *(spool.write for spool in spools)]
                    for _ in _formatted_rows(records, builder, tables, report):
                        deflate([(write, t.take()) for write, t in zip(targets, tables, strict=True)])
                        yield
                    deflate([(write, t.take()) for write, t in zip(targets, tables, strict=True)])
            finally:
                deflate.close()
                if isinstance(records, SplitRecords):
                    records.close()
        yield
        for table, spool in zip(plan.tables[1:], spools, strict=True):
            yield from spool.copy_into(zf, table.file_name)
    finally:
        for spool in spools:
            spool.close()
    for table_plan, text in zip(plan.tables, tables, strict=True):
        for i, n in text.escaped.items():
            report.changes[(table_plan.file_name, table_plan.columns[i].header, FORMULA_STEP)] += n
    summary = summarise(plan, Counter(dict(enumerate(t.count for t in tables))), report)
    zf.writestr(REPORT_FILE, report_csv(report, options))
    zf.writestr(README_FILE, readme_text(plan, options, summary).encode("utf-8"))
    done.append(summary)
    yield


def write_csv_zip(
    schemas: Sequence[FormSchema], records: Iterable[ExportRecord], options: ExportOptions, out: BinaryIO
) -> ExportSummary:
    """Write the CSV zip of ``records`` (all versions' ``schemas``, oldest first) to ``out``."""
    plan = plan_tables(schemas, options)
    done: list[ExportSummary] = []
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL) as zf:
        for _ in _zip_members(zf, plan, options, records, CleaningReport(), done):
            pass
    return done[0]


class ChunkSink(io.RawIOBase):
    """A write-only, non-seekable file that hands out what was written since the last drain.

    Written by one thread and drained by another (the CSV zip deflates on a helper thread), hence the lock.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]  # bytes is all zipfile writes
        with self._lock:
            self._buf += data
        return len(data)

    def drain(self) -> bytes:
        with self._lock:
            out = bytes(self._buf)
            self._buf.clear()
        return out


def iter_csv_zip(
    schemas: Sequence[FormSchema],
    records: Iterable[ExportRecord],
    options: ExportOptions,
    on_done: Callable[[ExportSummary], None] | None = None,
    media: Callable[[], Iterable[tuple[str, Iterable[bytes]]]] | None = None,
) -> Iterator[bytes]:
    """Return an iterator of the CSV zip's bytes chunks; options are checked now, records read lazily.

    ``plan_tables`` runs before this returns, so a bad option raises ``ExportOptionError`` here (before
    an HTTP response starts); ``on_done`` receives the summary after the last chunk. ``media``, called
    once the tables are written (so it may name the files of the records just read), gives the files
    to add under ``media/`` as (file name, byte chunks), as ODK Central's export with attachments does.
    """
    plan = plan_tables(schemas, options)

    def chunks() -> Iterator[bytes]:
        done: list[ExportSummary] = []
        sink = ChunkSink()
        with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL) as zf:
            for _ in _zip_members(zf, plan, options, records, CleaningReport(), done):
                if data := sink.drain():
                    yield data
            for name, parts in media() if media is not None else ():
                with zf.open(zip_member(zf, f"{MEDIA_FOLDER}/{name}"), "w", force_zip64=True) as member:
                    for part in parts:
                        member.write(part)
                        if data := sink.drain():
                            yield data
        if data := sink.drain():
            yield data
        if on_done is not None:
            on_done(done[0])

    return chunks()
