"""Zip entries carry the time they were written, like any file an analyst unpacks (not 1 January 1980)."""

from __future__ import annotations

import io
import time
import zipfile
import zlib

from exports import ExportOptions, write_csv_zip
from exports.csv_zip import COMPRESS_LEVEL
from tests.exports.coop_fixture import SCHEMAS, coop_values, record


def test_every_entry_is_stamped_with_the_export_time() -> None:
    out = io.BytesIO()
    before = time.localtime()[:3]
    write_csv_zip(SCHEMAS, [record("uuid:a", coop_values("uuid:a"))], ExportOptions(), out)
    with zipfile.ZipFile(io.BytesIO(out.getvalue())) as zf:
        infos = zf.infolist()
        assert len(infos) >= 3
        for info in infos:
            assert info.date_time[:3] >= before, info.filename
            assert info.compress_type == zipfile.ZIP_DEFLATED, info.filename


def _deflated_size(data: bytes, level: int) -> int:
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15)  # raw deflate, as in a zip entry
    return len(compressor.compress(data) + compressor.flush())


def test_every_entry_is_deflated_at_the_export_level() -> None:
    """Streamed members (hand-made entries) and written ones alike use ``COMPRESS_LEVEL``, not zlib's default."""
    out = io.BytesIO()
    records = [record(f"uuid:{n}", coop_values(f"uuid:{n}")) for n in range(300)]
    write_csv_zip(SCHEMAS, records, ExportOptions(), out)
    with zipfile.ZipFile(io.BytesIO(out.getvalue())) as zf:
        main = zf.read("coop.csv")
        assert _deflated_size(main, COMPRESS_LEVEL) != _deflated_size(main, 6)  # the data tells the levels apart
        for info in zf.infolist():
            assert info.compress_size == _deflated_size(zf.read(info), COMPRESS_LEVEL), info.filename
