"""Form upload → servable XForm: XLSForm conversion with pyxform, or an uploaded XForm accepted as is.

The bytes come from an admin's upload, so they are sniffed (magic bytes win over the file name),
zip bombs are refused before pyxform's readers see an .xlsx, and every exception pyxform raises
becomes a ``FormError`` that keeps pyxform's own message (it names the sheet and row).
Conversion of a big form can take tens of seconds (docs/reference/xlsform.md §1.7): callers run
``convert_upload`` in a worker, never in a request thread.
"""

from __future__ import annotations

import dataclasses
import io
import warnings as pywarnings
import zipfile
from dataclasses import dataclass
from typing import Any, Literal

from lxml import etree

from forms.errors import FormError, XmlRejectedError, pyxform_context
from forms.identity import clean_form_id, form_id_from_filename
from forms.safe_xml import parse_untrusted_xml
from forms.schema import FormSchema
from forms.xform import MAX_XFORM_BYTES, MAX_XFORM_DEPTH, parse_xform

SourceKind = Literal["xlsx", "xls", "xform"]

MAX_UPLOAD_BYTES = 25 * 1024 * 1024
# Zip-bomb limits for .xlsx uploads. Real XLSForms in the corpus compress at most ~30:1 and hold
# under 20 members and 5 MB uncompressed; these limits leave a wide margin.
MAX_ZIP_MEMBERS = 2000
MAX_ZIP_UNCOMPRESSED_BYTES = 200 * 1024 * 1024
MAX_ZIP_RATIO = 100
_RATIO_CHECK_MIN_BYTES = 1024 * 1024  # tiny members compress extremely well and are harmless

_ZIP_MAGIC = b"PK\x03\x04"
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# pyxform's id when the workbook has no settings/form_id and the input is bytes (xlsform.md §1.2).
PYXFORM_DEFAULT_ID = "data"


@dataclass(frozen=True, slots=True)
class ConvertedForm:
    """A form ready to serve: the XForm bytes, itemsets.csv, pyxform's warnings and the schema."""

    xform: bytes  # UTF-8, exactly what is served to devices
    itemsets: bytes | None  # itemsets.csv (select_one_external), UTF-8, or None
    warnings: tuple[str, ...]
    schema: FormSchema
    source_kind: SourceKind


def sniff_kind(data: bytes, filename: str) -> SourceKind:
    """Return the upload's kind from its magic bytes (the file name is only a tie-breaker)."""
    if data.startswith(_ZIP_MAGIC):
        return "xlsx"
    if data.startswith(_OLE2_MAGIC):
        return "xls"
    head = data[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"<") or data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "xform"
    raise FormError(
        "not_a_spreadsheet",
        f"'{filename}' is not an XLSForm (.xlsx or .xls) or an XForm (.xml).",
        {"filename": filename},
    )


def check_zip_safety(data: bytes) -> None:
    """Refuse an .xlsx whose zip directory announces a zip bomb or is not a workbook."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        message = f"The .xlsx file is damaged and cannot be read: {exc}"
        raise FormError("corrupt_spreadsheet", message) from exc
    if len(members) > MAX_ZIP_MEMBERS:
        raise FormError(
            "spreadsheet_too_large",
            f"The .xlsx file holds {len(members)} parts, the limit is {MAX_ZIP_MEMBERS}.",
        )
    total = sum(m.file_size for m in members)
    if total > MAX_ZIP_UNCOMPRESSED_BYTES:
        raise FormError(
            "spreadsheet_too_large",
            f"The .xlsx file expands to {total} bytes, the limit is {MAX_ZIP_UNCOMPRESSED_BYTES}.",
        )
    for member in members:
        if member.file_size < _RATIO_CHECK_MIN_BYTES:
            continue
        ratio = member.file_size / max(member.compress_size, 1)
        if ratio > MAX_ZIP_RATIO:
            raise FormError(
                "spreadsheet_too_large",
                f"The .xlsx part '{member.filename}' expands {ratio:.0f} times, the limit is {MAX_ZIP_RATIO}.",
                {"member": member.filename},
            )
    names = {m.filename for m in members}
    if "xl/workbook.xml" not in names:
        raise FormError("not_a_spreadsheet", "The zip file is not an Excel workbook (.xlsx).")


def _has_form_id(settings: list[dict[str, Any]]) -> bool:
    for row in settings or ():
        for key, value in row.items():
            if str(key).strip().lower() in ("form_id", "id_string") and str(value or "").strip():
                return True
    return False


def _pyxform_error(exc: Exception) -> FormError:
    from pyxform.errors import PyXFormError

    message = str(exc).strip() or type(exc).__name__
    context = pyxform_context(message)
    if isinstance(exc, PyXFormError):
        code = getattr(exc, "code", None)
        if code is not None:
            context["pyxform_code"] = getattr(code, "name", str(code))
        return FormError("xlsform_invalid", message, context)
    # pyxform lets other exception types escape (KeyError for select_one_external without a
    # choice_filter, UnicodeDecodeError for odd zips): still the admin's form, still pyxform's words.
    context["exception"] = type(exc).__name__
    return FormError("conversion_failed", f"{type(exc).__name__}: {message}", context)


def _convert_workbook(
    data: bytes, kind: SourceKind, filename: str, default_form_id: str | None
) -> tuple[str, str | None, list[str]]:
    # pyxform (and openpyxl under it) is imported here, not at module level: a web worker imports this
    # module for its types but converts in a child process (server/services/form_conversion.py), and
    # would otherwise carry ~30 MB it never uses.
    from pyxform.errors import PyXFormError
    from pyxform.xls2json_backends import get_xlsform
    from pyxform.xls2xform import convert

    collected: list[str] = []
    with pywarnings.catch_warnings(record=True) as caught:
        pywarnings.simplefilter("always")
        try:
            definition = get_xlsform(data, file_type=f".{kind}")
        except PyXFormError as exc:
            raise _pyxform_error(exc) from exc
        except Exception as exc:  # xlrd/openpyxl choke on damaged files with assorted exception types
            raise FormError(
                "corrupt_spreadsheet",
                f"The .{kind} file is damaged and cannot be read: {type(exc).__name__}: {exc}",
                {"exception": type(exc).__name__},
            ) from exc
        try:
            if not _has_form_id(definition.settings):
                # Like pyxform for a path and ODK Central for an upload: the uploader's fallback, else
                # the file's name (forms/identity.py says how it is cleaned).
                definition.fallback_form_name = (
                    clean_form_id(default_form_id, source="form id fallback")
                    if default_form_id is not None
                    else form_id_from_filename(filename)
                )
            as_dict = {f.name: getattr(definition, f.name) for f in dataclasses.fields(definition)}
            result = convert(as_dict, warnings=collected, validate=False, pretty_print=False)
        except FormError:
            raise
        except Exception as exc:  # pyxform raises more than PyXFormError (see _pyxform_error)
            raise _pyxform_error(exc) from exc
    # Library warnings (openpyxl's "Unknown extension ...") are kept: they explain odd workbooks.
    # Deprecation notices are for us, not for the admin who uploaded the form.
    collected.extend(
        str(w.message) for w in caught if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning))
    )
    return result.xform, result.itemsets, collected


def _accept_xform(data: bytes) -> bytes:
    try:
        data.decode("utf-8")
        return data
    except UnicodeDecodeError:
        pass
    # A UTF-16 (or other) XForm is re-encoded once, so what we serve is always UTF-8.
    try:
        root = parse_untrusted_xml(data, max_bytes=MAX_XFORM_BYTES, max_depth=MAX_XFORM_DEPTH)
    except XmlRejectedError as exc:
        code = "xform_unsafe" if exc.code == "xml_unsafe" else "xform_invalid"
        raise FormError(code, exc.message, {"xml_code": exc.code}) from exc
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def convert_upload(data: bytes, filename: str, *, default_form_id: str | None = None) -> ConvertedForm:
    """Turn an uploaded XLSForm (.xlsx/.xls) or XForm (.xml) into a ``ConvertedForm`` or raise FormError.

    A workbook without settings/form_id gets ``default_form_id``, else the id ``filename`` gives
    (``forms.identity``). A workbook without a version converts without one (``schema.version`` is
    empty): the caller chooses it (``forms.identity.next_version``) and stamps it in.
    """
    if len(data) > MAX_UPLOAD_BYTES:
        raise FormError("spreadsheet_too_large", f"The upload is {len(data)} bytes, the limit is {MAX_UPLOAD_BYTES}.")
    kind = sniff_kind(data, filename)
    if kind == "xform":
        xform = _accept_xform(data)
        schema = parse_xform(xform)
        return ConvertedForm(xform=xform, itemsets=None, warnings=(), schema=schema, source_kind=kind)
    if kind == "xlsx":
        check_zip_safety(data)
    xform_text, itemsets_text, collected = _convert_workbook(data, kind, filename, default_form_id)
    xform = xform_text.encode("utf-8")
    itemsets = itemsets_text.encode("utf-8") if itemsets_text is not None else None
    schema = parse_xform(xform, itemsets)
    return ConvertedForm(xform=xform, itemsets=itemsets, warnings=tuple(collected), schema=schema, source_kind=kind)
