"""What an analyst can ask of an export: ``ExportOptions`` and its parsing from a query string.

Every option of docs/EXPORTS.md lives here, with its default. ``options_from_query`` turns the strings
of an HTTP query string (or CLI flags, or a scheduled export's saved settings) into options and names the
bad parameter in an ``ExportOptionError`` when one does not parse.

Choices made here (and written into the zip's README.txt):
- ``separator`` defaults to ``"-"`` like ODK Central (``meta-instanceID``), so headers are valid
  names in R/Stata after a light rename and never contain ``/``.
- ``split_geopoint`` defaults to on (ODK Central always splits); the raw column is then dropped, and a
  value that does not parse as a geopoint is quoted in ``_issues`` so nothing is lost.
- ``split_select_multiple`` defaults to off; on, it keeps the original column and adds one 0/1 column per
  choice of the form (every choice, seen or not).
- ``labels="labels"`` writes choice labels in ``lang``; headers stay field names unless
  ``headers="labels"``.
- ``since`` is inclusive and ``until`` exclusive, both on the submission date (UTC).
- ``review_states`` naming ``"rejected"`` includes rejected submissions even without ``include_rejected``.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

LabelMode = Literal["values", "labels"]
HeaderMode = Literal["names", "labels"]

# The review states ODK Central uses; ``received`` is a submission nobody reviewed yet.
REVIEW_STATES = frozenset({"received", "hasIssues", "edited", "approved", "rejected"})
LABEL_MODES: tuple[LabelMode, ...] = ("values", "labels")
HEADER_MODES: tuple[HeaderMode, ...] = ("names", "labels")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ExportOptionError(ValueError):
    """An export option that does not parse or does not fit the form; ``field`` names the parameter."""

    code = "export_option_invalid"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class ExportOptions:
    """Everything that shapes one export; the defaults give ODK Central's layout, cleaned."""

    labels: LabelMode = "values"
    lang: str | None = None
    headers: HeaderMode = "names"
    group_paths: bool = True
    separator: str = "-"
    split_select_multiple: bool = False
    split_geopoint: bool = True
    since: datetime | None = None
    until: datetime | None = None
    review_states: frozenset[str] = frozenset()  # empty: every state
    versions: frozenset[str] = frozenset()  # empty: every version
    submitters: frozenset[str] = frozenset()  # empty: every submitter
    field_equals: tuple[tuple[str, str], ...] = ()  # (root-level field path, cleaned value; choice *names*)
    include_edits: bool = False
    include_deleted: bool = False
    include_rejected: bool = False
    bom: bool = False
    clean: bool = True
    geojson_field: str | None = None  # path of the geopoint for GeoJSON; None: the first one

    def __post_init__(self) -> None:
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ExportOptionError(name, "needs a time zone (naive datetimes are ambiguous)")
        if self.since and self.until and self.since >= self.until:
            raise ExportOptionError("until", "must be after since")
        if self.separator == "" or "," in self.separator or _CONTROL.search(self.separator):
            # A control character in a header breaks XLSX (openpyxl refuses it mid-stream) and CSV readers.
            raise ExportOptionError("separator", "must be non-empty and contain no comma, newline or control character")
        unknown = self.review_states - REVIEW_STATES
        if unknown:
            raise ExportOptionError("review_state", f"unknown review state(s): {', '.join(sorted(unknown))}")


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_FIELD_FILTER_PREFIX = "field."
_PATH_RE = re.compile(r"^[A-Za-z_][\w.\-]*(/[A-Za-z_][\w.\-]*)*$")

QueryValue = str | Sequence[str]


def _one(name: str, raw: QueryValue) -> str:
    if isinstance(raw, str):
        return raw
    if len(raw) != 1:
        raise ExportOptionError(name, "given more than once")
    return raw[0]


def _many(raw: QueryValue) -> frozenset[str]:
    # Accept both ``?version=1&version=2`` and ``?version=1,2``.
    items = [raw] if isinstance(raw, str) else list(raw)
    return frozenset(part.strip() for item in items for part in item.split(",") if part.strip())


def _bool(name: str, raw: QueryValue) -> bool:
    text = _one(name, raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ExportOptionError(name, f"expected true or false, got {text!r}")


def parse_instant(name: str, text: str) -> datetime:
    """Parse a date (midnight UTC) or an ISO 8601 dateTime (UTC when it has no offset)."""
    text = text.strip()
    try:
        if len(text) == 10:
            return datetime.fromisoformat(text).replace(tzinfo=UTC)
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ExportOptionError(name, f"expected an ISO 8601 date or dateTime, got {text!r}") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def options_from_query(query: Mapping[str, QueryValue], ignore: Collection[str] = ()) -> ExportOptions:
    """Build ``ExportOptions`` from query-string values; raise ``ExportOptionError`` on the first bad one.

    Keys: ``labels`` (values|labels), ``lang``, ``headers`` (names|labels), ``group_paths``, ``separator``,
    ``split_select_multiple``, ``split_geopoint``, ``since``, ``until``, ``review_state``, ``version``,
    ``submitter`` (repeatable or comma-separated), ``field.<path>=<value>``, ``include_edits``,
    ``include_deleted``, ``include_rejected``, ``bom``, ``clean``, ``geojson_field`` (the core's names; the
    JSON API's are their camelCase, as Central's ``submissions.csv.zip``, translated by the server before
    they reach here). Unknown keys are an
    error (a typo must not silently export everything) unless listed in ``ignore``. Yes/no options take
    ``true``/``false``, ``1``/``0``, ``yes``/``no`` or ``on``/``off``; ``bom=true`` is the CSV for Excel.
    """
    kwargs: dict[str, object] = {}
    field_equals: list[tuple[str, str]] = []
    for key, raw in query.items():
        if key in ignore:
            continue
        if key.startswith(_FIELD_FILTER_PREFIX):
            path = key[len(_FIELD_FILTER_PREFIX) :]
            if not _PATH_RE.match(path):
                raise ExportOptionError(key, "expected field.<path>=<value> with a slash-separated field path")
            field_equals.append((path, _one(key, raw)))
            continue
        if key in ("labels", "headers"):
            text = _one(key, raw).strip().lower()
            allowed: tuple[str, ...] = LABEL_MODES if key == "labels" else HEADER_MODES
            if text not in allowed:
                raise ExportOptionError(key, f"expected one of {', '.join(allowed)}, got {text!r}")
            kwargs[key] = text
        elif key in ("lang", "geojson_field"):
            text = _one(key, raw).strip()
            if not text:
                raise ExportOptionError(key, "must not be empty")
            kwargs[key] = text
        elif key == "separator":
            kwargs[key] = _one(key, raw)
        elif key in (
            "group_paths",
            "split_select_multiple",
            "split_geopoint",
            "include_edits",
            "include_deleted",
            "include_rejected",
            "bom",
            "clean",
        ):
            kwargs[key] = _bool(key, raw)
        elif key in ("since", "until"):
            kwargs[key] = parse_instant(key, _one(key, raw))
        elif key == "review_state":
            kwargs["review_states"] = _many(raw)
        elif key == "version":
            kwargs["versions"] = _many(raw)
        elif key == "submitter":
            kwargs["submitters"] = _many(raw)
        else:
            raise ExportOptionError(key, "unknown export option")
    if field_equals:
        kwargs["field_equals"] = tuple(sorted(field_equals))
    return ExportOptions(**kwargs)  # type: ignore[arg-type]  # keys checked one by one above
