"""Zip entries carry the time they were written, like any file an analyst unpacks (not 1 January 1980)."""

from __future__ import annotations

import io
import time
import zipfile

from exports import ExportOptions, write_csv_zip
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
