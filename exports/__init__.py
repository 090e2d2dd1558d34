"""File formats for analysts: cleaned CSV zip, XLSX and GeoJSON, streamed (pure).

The public API, importable from here:

- ``ExportOptions`` / ``options_from_query(query, ignore=())`` / ``ExportOptionError(field, message)``
- ``ExportRecord``: one stored submission version handed to an export
- ``write_csv_zip(schemas, records, options, out) -> ExportSummary`` and
  ``iter_csv_zip(schemas, records, options, on_done=None) -> Iterator[bytes]``
- ``write_xlsx(schemas, records, options, out) -> ExportSummary`` and
  ``iter_xlsx(schemas, records, options, on_done=None) -> Iterator[bytes]``
- ``write_geojson(schemas, records, options, out) -> ExportSummary`` and
  ``iter_geojson(schemas, records, options, on_done=None) -> Iterator[bytes]``
- ``plan_tables(schemas, options) -> ExportPlan`` (file names and headers, without writing anything)

``schemas`` are all versions of one form, oldest first; ``records`` is read once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from exports.csv_zip import iter_csv_zip, write_csv_zip
from exports.geojson import iter_geojson, write_geojson
from exports.options import ExportOptionError, ExportOptions, options_from_query
from exports.records import ExportRecord
from exports.rows import ExportSummary, TableSummary
from exports.tables import ExportPlan, plan_tables

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence
    from typing import BinaryIO

    from forms.schema import FormSchema


def write_xlsx(
    schemas: Sequence[FormSchema], records: Iterable[ExportRecord], options: ExportOptions, out: BinaryIO
) -> ExportSummary:
    """Write the tables of ``records`` as a typed XLSX workbook (``exports.xlsx.write_xlsx``).

    openpyxl is imported on the first XLSX export: it costs every web worker about 20 MB that only
    an XLSX export needs.
    """
    from exports.xlsx import write_xlsx as write

    return write(schemas, records, options, out)


def iter_xlsx(
    schemas: Sequence[FormSchema],
    records: Iterable[ExportRecord],
    options: ExportOptions,
    on_done: Callable[[ExportSummary], None] | None = None,
) -> Iterator[bytes]:
    """Return the XLSX workbook's bytes chunks, streamed as records are read (``exports.xlsx.iter_xlsx``).

    openpyxl is imported here, on the first XLSX export (see ``write_xlsx``).
    """
    from exports.xlsx import iter_xlsx as chunks

    return chunks(schemas, records, options, on_done)


__all__ = [
    "ExportOptionError",
    "ExportOptions",
    "ExportPlan",
    "ExportRecord",
    "ExportSummary",
    "TableSummary",
    "iter_csv_zip",
    "iter_geojson",
    "iter_xlsx",
    "options_from_query",
    "plan_tables",
    "write_csv_zip",
    "write_geojson",
    "write_xlsx",
]
