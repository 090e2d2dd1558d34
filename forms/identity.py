"""What names a form version when the spreadsheet does not: its form id and its version string.

Admins rarely fill the settings sheet (most beginners' forms have none), so, as ODK Central does:
- the form id falls back to a name the uploader gives (Central's ``X-XlsForm-FormId-Fallback`` header,
  percent-encoded by Central's own web page because HTTP headers carry Latin-1 only), else to the
  uploaded file's name without its extension (pyxform's own default for a path). The name is used as
  written, non-ASCII letters and spaces included (the ODK XForms spec allows any string as a form id;
  Central keeps ``my-båd-førm``), after the clean-up Central's converter does: percent-decoding of the
  header, the last path segment only, surrounding white space dropped. Central's converter also
  HTML-escapes the name (``&`` becomes ``&amp;``), a side effect of building a temporary file name;
  pyxform escapes the attribute itself, so the characters are kept as typed here. Like Central, an id
  ending in ``.xls``, ``.xlsx`` or ``.xml`` is refused (``form.xls.xls``). Text is NFC-normalised
  (macOS file names arrive decomposed: the same visible id must be the same id).
- the version, when the settings sheet has none, is generated: ``yyyymmddnn`` (the XLSForm docs'
  recommended convention: the date, then a two-digit revision of that day), never one the form
  already has. It is stamped into the XForm pyxform made without one, so devices send it back.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from datetime import date
from urllib.parse import unquote
from xml.sax.saxutils import quoteattr

from lxml import etree

from forms.errors import FormError

MAX_FORM_ID_LENGTH = 255  # the column that holds it
_EXTENSIONS = re.compile(r"\.(xlsx|xls|xml)$", re.IGNORECASE)
# Characters XML 1.0 cannot hold, and the C1 controls (invisible, never meant): refused in an id.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_XF_INSTANCE = "{http://www.w3.org/2002/xforms}instance"
_INSTANCE_TAG = re.compile(rb"<instance(?:\s[^>]*)?>")


def clean_form_id(text: str, *, source: str) -> str:
    """Return ``text`` as a form id (white space trimmed, NFC) or raise ``FormError`` naming ``source``."""
    value = unicodedata.normalize("NFC", text).strip()
    if not value:
        raise FormError(
            "missing_form_id",
            f"The {source} gives no form id: add a 'form_id' column to the 'settings' sheet, "
            "or name the file after the form.",
            {"sheet": "settings", "source": source},
        )
    if _NOT_XML.search(value):
        raise _invalid(value, source, "it holds control characters")
    if "/" in value or "\\" in value:
        raise _invalid(value, source, "it holds a slash")
    if _EXTENSIONS.search(value):
        raise _invalid(value, source, "it cannot end in .xls, .xlsx or .xml (rename form.xls.xls to form.xls)")
    if len(value) > MAX_FORM_ID_LENGTH:
        raise _invalid(value, source, f"it is longer than {MAX_FORM_ID_LENGTH} characters")
    return value


def _invalid(value: str, source: str, reason: str) -> FormError:
    return FormError(
        "invalid_form_id",
        f"The form id {value!r} from the {source} is not usable: {reason}. "
        "Set a 'form_id' in the 'settings' sheet or choose another name.",
        {"form_id": value, "source": source, "reason": reason},
    )


def _last_segment(name: str) -> str:
    # Browsers send a bare name, but some clients send a path (C:\Users\...\form.xlsx).
    return re.split(r"[/\\]", name)[-1]


def form_id_from_filename(filename: str) -> str:
    """Return the form id a file name gives: its last segment without the .xlsx/.xls/.xml extension."""
    stem = _EXTENSIONS.sub("", _last_segment(filename).strip(), count=1)
    return clean_form_id(stem, source="file name")


def form_id_from_header(value: str) -> str:
    """Return the form id of a percent-encoded ``X-XlsForm-FormId-Fallback`` value (or a plain one)."""
    return clean_form_id(_last_segment(unquote(value, errors="strict")), source="form id fallback")


def next_version(existing: Iterable[str], today: date) -> str:
    """Return ``yyyymmddnn`` for ``today``: one past the highest revision of that day, never in ``existing``."""
    prefix = today.strftime("%Y%m%d")
    taken = set(existing)
    revisions = [int(v[len(prefix) :]) for v in taken if v.startswith(prefix) and v[len(prefix) :].isdigit()]
    revision = max(revisions, default=0) + 1
    # Past 99 revisions in a day the number simply grows a digit; still unique, still after the others.
    while (candidate := f"{prefix}{revision:02d}") in taken:
        revision += 1
    return candidate


def stamp_version(xform: bytes, version: str) -> bytes:
    """Return pyxform's XForm with ``version`` on its primary instance root, every other byte unchanged.

    Only for XForms pyxform wrote without a version (its output is regular: the first ``<instance>``
    is the primary one). The result is parsed back and checked, so a form this cannot stamp fails
    loudly instead of being served without the version devices must send back.
    """
    opening = _INSTANCE_TAG.search(xform)
    if opening is None:
        raise ValueError("no <instance> element to stamp a version on")
    start = xform.index(b"<", opening.end())
    end = _start_tag_end(xform, start)
    insert_at = end - 1 if xform[end - 1 : end] == b"/" else end
    attribute = f" version={quoteattr(version)}".encode()
    stamped = xform[:insert_at] + attribute + xform[insert_at:]
    root = etree.fromstring(stamped).find(f".//{_XF_INSTANCE}")
    children = [child for child in root if isinstance(child.tag, str)] if root is not None else []
    if not children or children[0].get("version") != version:
        raise ValueError("the version could not be stamped on the primary instance")
    return stamped


_VERSION_ATTRIBUTE = re.compile(rb"""(\s)version\s*=\s*("[^"]*"|'[^']*')""")


def restamp_version(xform: bytes, version: str) -> bytes:
    """Return the XForm with ``version`` on its primary instance root, replacing the one it had.

    What ODK Central does when a draft is published under a new version (``draft/publish?version=``):
    only the root's own ``version`` attribute changes (not a namespaced one, not an element named
    ``version``); a form without one is stamped. Checked by parsing the result back.
    """
    opening = _INSTANCE_TAG.search(xform)
    if opening is None:
        raise ValueError("no <instance> element to stamp a version on")
    start = xform.index(b"<", opening.end())
    end = _start_tag_end(xform, start)
    tag = xform[start:end]
    found = _VERSION_ATTRIBUTE.search(tag)
    if found is None:
        return stamp_version(xform, version)
    replaced = tag[: found.start()] + found.group(1) + f"version={quoteattr(version)}".encode() + tag[found.end() :]
    restamped = xform[:start] + replaced + xform[end:]
    root = etree.fromstring(restamped).find(f".//{_XF_INSTANCE}")
    children = [child for child in root if isinstance(child.tag, str)] if root is not None else []
    if not children or children[0].get("version") != version:
        raise ValueError("the version could not be stamped on the primary instance")
    return restamped


def _start_tag_end(data: bytes, start: int) -> int:
    """Return the index of the ``>`` closing the start tag at ``start`` (quotes respected)."""
    quote: int | None = None
    for index in range(start + 1, len(data)):
        char = data[index]
        if quote is not None:
            if char == quote:
                quote = None
        elif char in (0x22, 0x27):  # " or '
            quote = char
        elif char == 0x3E:  # >
            return index
    raise ValueError("unterminated start tag")
