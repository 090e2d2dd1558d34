"""Use cases of the exports area: on-demand exports (streamed), presets, schedules and scheduled runs.

Everything a client can get wrong (an unknown form, a bad option, a language the form does not have, a
target folder outside EXPORT_DIR) is raised by ``open_export`` / the ``create_*`` functions *before* the
first byte is produced: a streamed HTTP response cannot turn into a 400 once it has started.
"""

from __future__ import annotations

import csv
import gc
import io
import os
import re
import socket
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy.orm import Session, sessionmaker

from exports import (
    ExportOptionError,
    ExportOptions,
    ExportSummary,
    iter_csv_zip,
    iter_geojson,
    iter_xlsx,
    options_from_query,
    plan_tables,
)
from exports.odata import lookup_in, system_properties
from exports.odata_filter import Filter, FilterError, parse_filter
from exports.records import ExportRecord
from forms.schema import FormSchema
from server.blobstore import configured_blob_store
from server.db.base import utcnow
from server.db.models.exports import EXPORT_FORMATS, ExportPreset, ExportSchedule
from server.db.models.forms import Form
from server.db.queries import audit
from server.db.queries import exports as q
from server.db.transaction import transaction
from server.errors import ApiError, bad_request, conflict, not_found

MEDIA_TYPES = {
    "zip": "application/zip",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "geojson": "application/geo+json",
}
# Keys of the query string that are not export options.
NOT_OPTIONS = ("preset",)
# The export options' names on the wire (query strings, presets' ``options``, the console's forms) are the
# camelCase of ODK Central's ``submissions.csv.zip`` (issue 16); ``exports.options_from_query`` and the
# stored presets keep the core's names. Names not listed are the same on both sides (``labels``, ``since``,
# ``version``, ``field.<path>``...).
WIRE_OPTIONS = {
    "group_paths": "groupPaths",
    "split_select_multiple": "splitSelectMultiples",
    "split_geopoint": "splitGeopoint",
    "review_state": "reviewState",
    "include_edits": "includeEdits",
    "include_deleted": "includeDeleted",
    "include_rejected": "includeRejected",
    "geojson_field": "geojsonField",
}
CORE_OPTIONS = {wire: core for core, wire in WIRE_OPTIONS.items()}
_PRESET_NAME = re.compile(r"^[\w][\w .\-]{0,99}$")
# Accept the stored review-state names as well as ODK Central's.
_REVIEW_ALIASES = {"has_issues": "hasIssues"}
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_WEEKDAY_NUMBER = re.compile(r"(?<![/\d])\d+")  # a weekday number, not a step (*/2)

Query = Mapping[str, Sequence[str]]

# While an export streams, the cyclic garbage collector is paused (see _cyclic_gc_paused); a full
# collection still runs every GC_PAUSE_COLLECT_SECONDS so that cycles other requests make meanwhile
# are freed during a long export, not only after it.
GC_PAUSE_COLLECT_SECONDS = 30.0
_gc_pause_lock = threading.Lock()
_gc_pausers = 0
_gc_was_enabled = False


@dataclass
class ExportStream:
    """A started export: its file name, media type and the lazily produced bytes."""

    file_name: str
    media_type: str
    chunks: Iterator[bytes]
    summary: list[ExportSummary] = field(default_factory=list)  # filled once the last chunk is out


def option_name(core: str) -> str:
    """The wire name of an export option the core names (``group_paths`` -> ``groupPaths``)."""
    return WIRE_OPTIONS.get(core, core)


def unknown_option(name: str) -> ApiError:
    """400 for a parameter that is no export option, naming the camelCase spelling when it is a snake_case one."""
    wire = WIRE_OPTIONS.get(name)
    hint = f": did you mean {wire!r}?" if wire is not None else ""
    return bad_request("export_option_invalid", f"Unknown export parameter {name!r}{hint}", field=name)


def options_from_wire(query: Mapping[str, Any]) -> dict[str, Any]:
    """Export options as sent (camelCase names) under the core's names; 400 for a core (snake_case) name."""
    out: dict[str, Any] = {}
    for key, value in query.items():
        if key in WIRE_OPTIONS:
            raise unknown_option(key)
        out[CORE_OPTIONS.get(key, key)] = value
    return out


def options_to_wire(stored: Mapping[str, Any]) -> dict[str, Any]:
    """Export options under the core's names (a preset as stored) as the wire names them."""
    return {option_name(key): value for key, value in stored.items()}


def _cyclic_gc_paused(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """``chunks`` produced with the cyclic garbage collector paused; it runs again once the last export ends.

    An export allocates millions of short-lived dicts, lists and records, each of which counts towards
    the next generational collection, and none of which is part of a cycle: the collections found
    nothing to free and cost about a second of the main thread per 100,000 submissions (a fifth of the
    export), more in a worker whose heap is large. Reference counting still frees everything at once.
    The collector is process-wide: exports running together (threads of one worker) share one pause,
    counted, and the last to end turns it back on (only if it was on). Other requests of the process
    keep running meanwhile; the periodic full collection frees the cycles they make.
    """
    global _gc_pausers, _gc_was_enabled
    with _gc_pause_lock:
        if _gc_pausers == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pausers += 1
    try:
        collected_at = time.monotonic()
        for chunk in chunks:
            yield chunk
            if time.monotonic() - collected_at >= GC_PAUSE_COLLECT_SECONDS:
                gc.collect()
                collected_at = time.monotonic()
    finally:
        with _gc_pause_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_was_enabled:
                gc.enable()


def _option_error(exc: ExportOptionError) -> ApiError:
    field = option_name(exc.field)
    return bad_request(exc.code, f"Bad export parameter {field!r}: {exc.message}", field=field)


def get_form_or_404(session: Session, project_id: int, xml_form_id: str) -> Form:
    """Return the form or raise 404."""
    form = q.get_form(session, project_id, xml_form_id)
    if form is None:
        raise not_found("Form", project_id=project_id, form=xml_form_id)
    return form


def _as_lists(query: Mapping[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in query.items():
        out[key] = [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]
    return out


def effective_query(session: Session, form: Form, query: Query) -> dict[str, list[str]]:
    """The query (wire names) with its ``preset`` applied underneath, under the core's names.

    Explicit parameters override the preset's; a stored preset keeps the core's names (those written
    before the wire turned camelCase read unchanged).
    """
    query = options_from_wire(query)
    merged: dict[str, list[str]] = {}
    names = list(query.get("preset", []))
    if len(names) > 1:
        raise bad_request(
            "export_option_invalid", "Bad export parameter 'preset': given more than once", field="preset"
        )
    if names:
        preset = q.get_preset(session, form.id, names[0])
        if preset is None:
            raise bad_request(
                "export_option_invalid", f"Bad export parameter 'preset': no preset {names[0]!r}", field="preset"
            )
        merged.update(_as_lists(preset.options))
    for key, values in query.items():
        if key not in NOT_OPTIONS:
            merged[key] = list(values)
    if "review_state" in merged:
        merged["review_state"] = [
            ",".join(_REVIEW_ALIASES.get(p.strip(), p.strip()) for p in v.split(",")) for v in merged["review_state"]
        ]
    return merged


def parse_options(schemas: Sequence[FormSchema], query: Mapping[str, Sequence[str]]) -> ExportOptions:
    """Parse and check export options against the form's versions; 400 naming the bad parameter."""
    try:
        options = options_from_query(query)
        plan_tables(schemas, options)  # a language or field filter the form does not have
    except ExportOptionError as exc:
        raise _option_error(exc) from None
    return options


def _load_schemas(session: Session, form: Form) -> list[FormSchema]:
    schemas = q.form_schemas(session, form)
    if not schemas:
        raise conflict("form_has_no_version", "The form has no version to export yet", form=form.xml_form_id)
    return schemas


def export_processes() -> tuple[int, int]:
    """How many helper processes format one CSV zip export, and the submissions of a part they read.

    ``EXPORT_PROCESSES`` and ``EXPORT_PART_SUBMISSIONS``; outside an app, no helper.
    """
    from flask import current_app, has_app_context

    if not has_app_context():
        return 1, q.PART_SUBMISSIONS
    config = current_app.config
    processes = max(1, int(config.get("EXPORT_PROCESSES", 1)))
    return processes, max(1, int(config.get("EXPORT_PART_SUBMISSIONS", q.PART_SUBMISSIONS)))


def open_export(
    session: Session, project_id: int, xml_form_id: str, query: Query, fmt: str, actor: str
) -> ExportStream:
    """Check everything, audit ``form.export``, and return the export's lazily produced bytes."""
    if fmt not in EXPORT_FORMATS:
        raise bad_request("export_option_invalid", f"Unknown export format {fmt!r}", field="format")
    form = get_form_or_404(session, project_id, xml_form_id)
    schemas = _load_schemas(session, form)
    merged = effective_query(session, form, query)
    options = parse_options(schemas, merged)
    form_pk = form.id
    stream = ExportStream(f"{xml_form_id}.{fmt}", MEDIA_TYPES[fmt], iter(()))
    records = q.iter_export_records(session, form_pk, options)
    try:
        if fmt == "zip":
            processes, part = export_processes()
            if processes > 1:  # a large export is formatted on several cores (exports.parts)
                records = q.SnapshotParts(session, form_pk, options, processes, part)
            stream.chunks = iter_csv_zip(schemas, records, options, on_done=stream.summary.append)
        elif fmt == "geojson":
            stream.chunks = iter_geojson(schemas, records, options, on_done=stream.summary.append)
        else:  # streamed too: the first sheet leaves as its rows are read (exports/xlsx.py)
            stream.chunks = iter_xlsx(schemas, records, options, on_done=stream.summary.append)
    except ExportOptionError as exc:
        raise _option_error(exc) from None
    stream.chunks = _cyclic_gc_paused(stream.chunks)
    with transaction(session):
        details = {
            "format": fmt,
            "query": options_to_wire(merged),
            "preset": (query.get("preset") or [None])[0],
        }
        audit.record(session, actor, "form.export", project_id, f"form:{xml_form_id}", details)
    return stream


def open_submissions_csv_zip(
    session: Session,
    project_id: int,
    xml_form_id: str,
    query: Query,
    actor: str,
    *,
    attachments: bool = True,
    deleted_fields: bool = False,
    odata_filter: str | None = None,
) -> ExportStream:
    """ODK Central's ``submissions.csv.zip``: the CSV zip of Fieldsync's options, with Central's choices.

    ``attachments`` adds the exported submissions' files under ``media/``; without ``deleted_fields``
    the columns are those of the current version only (fields a later version removed are left out);
    ``odata_filter`` keeps the submissions a ``$filter`` on ``__id`` and ``__system`` members accepts.
    """
    form = get_form_or_404(session, project_id, xml_form_id)
    schemas = _load_schemas(session, form)
    if not deleted_fields:
        schemas = schemas[-1:]
    merged = effective_query(session, form, query)
    options = parse_options(schemas, merged)
    parsed = _system_filter(odata_filter)
    form_pk = form.id
    exported: list[str] = []

    def kept(records: Iterable[ExportRecord]) -> Iterator[ExportRecord]:
        for rec in records:
            if parsed is not None and not parsed.matches(
                lambda path, rec=rec: lookup_in({"__id": rec.instance_id, "__system": system_properties(rec)}, path)
            ):
                continue
            if attachments:
                exported.append(rec.instance_id)
            yield rec

    def media() -> Iterator[tuple[str, Iterable[bytes]]]:
        blobs = configured_blob_store()
        seen: set[str] = set()
        for name, sha in q.present_files(session, form_pk, exported):
            if name not in seen:  # one file per name, as Central's media folder has
                seen.add(name)
                yield name, blobs.iter_bytes(sha)
        session.rollback()  # end the read, as the records' reader does

    stream = ExportStream(f"{xml_form_id}.csv.zip", MEDIA_TYPES["zip"], iter(()))
    records = kept(q.iter_export_records(session, form_pk, options))
    try:
        stream.chunks = iter_csv_zip(
            schemas, records, options, on_done=stream.summary.append, media=media if attachments else None
        )
    except ExportOptionError as exc:
        raise _option_error(exc) from None
    stream.chunks = _cyclic_gc_paused(stream.chunks)
    with transaction(session):
        details = {
            "format": "csv.zip",
            "query": options_to_wire(merged),
            "preset": (query.get("preset") or [None])[0],
            "attachments": attachments,
            "deletedFields": deleted_fields,
            "filter": odata_filter,
        }
        audit.record(session, actor, "form.export", project_id, f"form:{xml_form_id}", details)
    return stream


def _system_filter(text: str | None) -> Filter | None:
    """A ``$filter`` of Central's export: only ``__id`` and ``__system`` members (400 for anything else)."""
    if text is None:
        return None
    try:
        parsed = parse_filter(text)
    except FilterError as exc:
        raise bad_request("odata_filter_invalid", f"Bad $filter: {exc}", option="$filter") from None
    for path in parsed.paths:
        if path != ("__id",) and path[:1] != ("__system",):
            raise bad_request(
                "odata_filter_invalid",
                f"Bad $filter: the export filters on __id and __system members, not {'/'.join(path)!r} "
                "(use field.<path>=<value>, or the OData feed)",
                option="$filter",
            )
    return parsed


@dataclass(frozen=True)
class PreviewTable:
    """The first rows of one table of an export, as the CSV zip writes them."""

    file_name: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def preview_export(
    session: Session, project_id: int, xml_form_id: str, query: Query, submissions: int = 5
) -> list[PreviewTable]:
    """The tables of the export the options describe, from its first ``submissions`` records (no file)."""
    form = get_form_or_404(session, project_id, xml_form_id)
    schemas = _load_schemas(session, form)
    options = parse_options(schemas, effective_query(session, form, query))
    records = islice(q.iter_export_records(session, form.id, options), submissions)
    try:
        data = b"".join(iter_csv_zip(schemas, records, options))
    except ExportOptionError as exc:
        raise _option_error(exc) from None
    tables = []
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for name in archive.namelist():
            if not name.endswith(".csv"):
                continue
            text = archive.read(name).decode("utf-8-sig")
            lines = list(csv.reader(io.StringIO(text)))
            if lines:
                tables.append(PreviewTable(name, tuple(lines[0]), tuple(tuple(r) for r in lines[1 : submissions + 1])))
    return tables


def write_export(
    session: Session, project_id: int, xml_form_id: str, query: Query, fmt: str, actor: str, out: BinaryIO
) -> ExportSummary:
    """Write a whole export to ``out`` (CLI, scheduled runs) and return its summary."""
    stream = open_export(session, project_id, xml_form_id, query, fmt, actor)
    for chunk in stream.chunks:
        out.write(chunk)
    return stream.summary[0]


# --- presets ---------------------------------------------------------------------------------------


def preset_options(raw: Mapping[str, Any]) -> dict[str, list[str]]:
    """A preset's options as sent (wire names) as stored: the core's names, each a list of strings.

    ``preset`` itself is not allowed (a preset does not name another one).
    """
    out: dict[str, list[str]] = {}
    for key, value in options_from_wire(raw).items():
        if key in NOT_OPTIONS:
            raise bad_request("export_option_invalid", "A preset cannot name another preset", field="preset")
        values = value if isinstance(value, list) else [value]
        out[key] = ["true" if v is True else "false" if v is False else str(v) for v in values]
    return out


def list_presets(session: Session, project_id: int, xml_form_id: str) -> list[ExportPreset]:
    """The form's named presets."""
    form = get_form_or_404(session, project_id, xml_form_id)
    return list(q.list_presets(session, form.id))


def create_preset(
    session: Session, project_id: int, xml_form_id: str, name: str, options: Mapping[str, Any], actor: str
) -> ExportPreset:
    """Save named export options for a form (checked like a query string); 409 if the name is taken."""
    form = get_form_or_404(session, project_id, xml_form_id)
    if not _PRESET_NAME.match(name):
        raise bad_request(
            "invalid_input", "A preset name is 1-100 letters, digits, spaces, '.', '-' or '_'", field="name"
        )
    stored = preset_options(options)
    parse_options(_load_schemas(session, form), stored)
    with transaction(session):
        new_id = q.insert_preset(session, form.id, name, stored, actor, utcnow())
        if new_id is None:
            raise conflict("preset_exists", f"The form already has a preset named {name!r}", name=name)
        audit.record(session, actor, "form.export_preset.create", project_id, f"form:{xml_form_id}", {"name": name})
    preset = q.get_preset(session, form.id, name)
    assert preset is not None
    return preset


def delete_preset(session: Session, project_id: int, xml_form_id: str, name: str, actor: str) -> None:
    """Delete a preset (404 when there is none of that name)."""
    form = get_form_or_404(session, project_id, xml_form_id)
    with transaction(session):
        if not q.delete_preset(session, form.id, name):
            raise not_found("Export preset", name=name)
        audit.record(session, actor, "form.export_preset.delete", project_id, f"form:{xml_form_id}", {"name": name})


# --- schedules -------------------------------------------------------------------------------------


def _weekday_name(number: str) -> str:
    if int(number) > 7:
        raise ValueError(f"weekday {number} is not 0-7")
    return _WEEKDAYS[int(number) % 7]


def cron_trigger(expression: str) -> CronTrigger:
    """Parse a five-field crontab expression (UTC); 400 naming ``cron`` when APScheduler refuses it."""
    fields = expression.split()
    try:
        if len(fields) != 5:
            raise ValueError(f"expected 5 fields (minute hour day month weekday), got {len(fields)}")
        minute, hour, day, month, weekday = fields
        # Crontab counts weekdays from Sunday (0 or 7); APScheduler from Monday: use names, which both read alike.
        weekday = _WEEKDAY_NUMBER.sub(lambda m: _weekday_name(m.group()), weekday)
        return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=weekday, timezone=UTC)
    except (ValueError, TypeError, IndexError) as exc:
        raise bad_request("invalid_cron", f"Bad cron expression {expression!r}: {exc}", field="cron") from None


def next_fire(expression: str, after: datetime) -> datetime:
    """The first time the cron expression fires strictly after ``after``."""
    fire = cron_trigger(expression).get_next_fire_time(None, after + timedelta(seconds=1))
    if fire is None:  # a crontab always fires again; guard anyway
        raise bad_request("invalid_cron", f"Cron expression {expression!r} never fires", field="cron")
    return fire.astimezone(UTC)


def project_export_dir(export_dir: Path, project_id: int) -> Path:
    """``EXPORT_DIR/<project id>``: every scheduled file of a project lives below it, and nothing else does."""
    return export_dir.resolve() / str(int(project_id))


def target_dir(export_dir: Path, project_id: int, folder: str) -> Path:
    """The schedule's folder resolved under the project's export directory; 400 if it would land outside it.

    Resolved (symlinks followed) and checked against ``EXPORT_DIR/<project>``, so neither a ``..`` in a
    request nor a folder stored before the check existed can reach another project's files.
    """
    if not folder or folder.startswith(("/", "\\")) or "\x00" in folder or re.match(r"^[A-Za-z]:", folder):
        raise bad_request(
            "invalid_folder", "The folder must be a relative path under the export directory", field="folder"
        )
    root = project_export_dir(export_dir, project_id)
    path = (root / folder).resolve()
    if path == root or not path.is_relative_to(root):
        raise bad_request("invalid_folder", "The folder must stay inside the export directory", field="folder")
    return path


def create_schedule(
    session: Session,
    project_id: int,
    xml_form_id: str,
    data: Mapping[str, Any],
    export_dir: Path,
    actor: str,
    now: datetime | None = None,
) -> ExportSchedule:
    """Create a scheduled export (cron, preset, folder under EXPORT_DIR, keep last N, format)."""
    form = get_form_or_404(session, project_id, xml_form_id)
    now = now or utcnow()
    cron = data["cron"]
    following = next_fire(cron, now - timedelta(seconds=1))
    folder = data.get("folder") or xml_form_id
    target_dir(export_dir, project_id, folder)
    preset = data.get("preset")
    if preset is not None and q.get_preset(session, form.id, preset) is None:
        raise bad_request("export_option_invalid", f"No preset {preset!r} for this form", field="preset")
    with transaction(session):
        schedule = ExportSchedule(
            form_id=form.id,
            cron=cron,
            preset=preset,
            folder=folder,
            keep=data.get("keep", 7),
            format=data.get("format", "zip"),
            enabled=True,
            next_run_at=following,
            created_by=actor,
            created_at=now,
        )
        session.add(schedule)
        session.flush()
        audit.record(
            session, actor, "form.export_schedule.create", project_id, f"form:{xml_form_id}", {"schedule": schedule.id}
        )
    return schedule


def list_schedules(session: Session, project_id: int, xml_form_id: str) -> list[dict[str, Any]]:
    """The form's schedules, each with its newest runs."""
    form = get_form_or_404(session, project_id, xml_form_id)
    schedules = list(q.list_schedules(session, form.id))
    runs = q.last_runs(session, [s.id for s in schedules])
    return [{"schedule": s, "runs": runs[s.id]} for s in schedules]


def delete_schedule(session: Session, project_id: int, xml_form_id: str, schedule_id: int, actor: str) -> None:
    """Delete a schedule (its files stay where they are)."""
    form = get_form_or_404(session, project_id, xml_form_id)
    with transaction(session):
        schedule = q.get_schedule(session, form.id, schedule_id)
        if schedule is None:
            raise not_found("Export schedule", id=schedule_id)
        session.delete(schedule)
        audit.record(
            session, actor, "form.export_schedule.delete", project_id, f"form:{xml_form_id}", {"schedule": schedule_id}
        )


def schedule_file(
    session: Session, project_id: int, xml_form_id: str, schedule_id: int, file_name: str, export_dir: Path
) -> Path:
    """A file a run of the schedule wrote and that is still kept (404 for any other name)."""
    form = get_form_or_404(session, project_id, xml_form_id)
    schedule = q.get_schedule(session, form.id, schedule_id)
    if schedule is None:
        raise not_found("Export schedule", id=schedule_id)
    written = {run.file_name for run in q.last_runs(session, [schedule_id], limit=10_000)[schedule_id]}
    path = target_dir(export_dir, project_id, schedule.folder) / file_name
    # Only names the runs recorded: never a path a caller makes up.
    if file_name not in written or not path.is_file():
        raise not_found("Export file", schedule=schedule_id, file=file_name)
    return path


# --- scheduled runs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunOutcome:
    """What one scheduler did with one due schedule."""

    schedule_id: int
    scheduled_for: datetime
    status: str  # "done" | "failed" | "taken" (another scheduler claimed it)
    file_name: str | None = None
    error: str | None = None


def worker_name() -> str:
    """This scheduler process's name in ``export_runs.claimed_by``."""
    return f"{socket.gethostname()}:{os.getpid()}"[:100]


def dated_file_name(xml_form_id: str, schedule_id: int, when: datetime, fmt: str) -> str:
    """``<form>-s<schedule>-<UTC timestamp>.<ext>`` for a run of schedule ``schedule_id`` due at ``when``.

    The schedule id in the name makes each file belong to exactly one schedule: two schedules sharing a
    folder never overwrite each other's files, and each one's ``keep`` pruning sees only its own.
    """
    safe = re.sub(r"[^\w.\-]", "_", xml_form_id)
    return f"{safe}-s{int(schedule_id)}-{when.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}.{fmt}"


def names_to_prune(names: Iterable[str], xml_form_id: str, schedule_id: int, fmt: str, keep: int) -> list[str]:
    """Of ``names``, the dated files of this schedule beyond the newest ``keep``."""
    safe = re.sub(r"[^\w.\-]", "_", xml_form_id)
    pattern = re.compile(rf"^{re.escape(safe)}-s{int(schedule_id)}-\d{{8}}T\d{{6}}Z\.{re.escape(fmt)}$")
    dated = sorted(name for name in names if pattern.match(name))  # timestamps sort as text
    return dated[: max(0, len(dated) - keep)]


def prune_files(folder: Path, xml_form_id: str, schedule_id: int, fmt: str, keep: int) -> list[str]:
    """Delete all but the newest ``keep`` dated files of this schedule; return the deleted names."""
    removed = names_to_prune((p.name for p in folder.iterdir()), xml_form_id, schedule_id, fmt, keep)
    for name in removed:
        (folder / name).unlink(missing_ok=True)
    return removed


def _run_one(session: Session, due: q.DueSchedule, export_dir: Path, worker: str) -> tuple[str, int]:
    # Checked again: the tree (a symlink) may have changed since the schedule was created.
    folder = target_dir(export_dir, due.project_id, due.folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = dated_file_name(due.xml_form_id, due.id, due.next_run_at, due.format)
    query: dict[str, list[str]] = {"preset": [due.preset]} if due.preset else {}
    # Written under a temporary name and renamed: a reader never sees half a file.
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            summary = write_export(
                session, due.project_id, due.xml_form_id, query, due.format, f"scheduler:{worker}", out
            )
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, folder / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    prune_files(folder, due.xml_form_id, due.id, due.format, due.keep)
    store = configured_blob_store()
    if store is not None:  # on an object store the file goes to the bucket, where every host finds it
        store.publish_export(
            export_dir,
            folder / name,
            lambda names: names_to_prune(names, due.xml_form_id, due.id, due.format, due.keep),
        )
    return name, summary.records_exported


def run_due_exports(
    sessions: sessionmaker[Session], export_dir: Path, now: datetime | None = None, worker: str | None = None
) -> list[RunOutcome]:
    """Run every scheduled export due at ``now``, each claimed once across all scheduler processes.

    The claim is the ``(schedule_id, scheduled_for)`` row inserted with ON CONFLICT DO NOTHING, in the
    same transaction as the compare-and-set that moves ``next_run_at`` on: a second scheduler either
    waits on the first one's insert and then finds it (PostgreSQL), or is serialised behind it (SQLite).
    Runs missed while no scheduler was up are coalesced into one.
    """
    now = now or utcnow()
    worker = worker or worker_name()
    outcomes: list[RunOutcome] = []
    session = sessions()
    try:
        with transaction(session):
            due = q.due_schedules(session, now)
        for item in due:
            with transaction(session):
                run_id = q.claim_run(session, item.id, item.next_run_at, worker, now)
                if run_id is not None:
                    q.advance_schedule(
                        session, item.id, item.next_run_at, next_fire(item.cron, max(now, item.next_run_at))
                    )
            if run_id is None:
                outcomes.append(RunOutcome(item.id, item.next_run_at, "taken"))
                continue
            try:
                name, records = _run_one(session, item, export_dir, worker)
            except Exception as exc:  # a broken preset or a full disk must not stop the other schedules
                session.rollback()
                message = exc.message if isinstance(exc, ApiError) else f"{type(exc).__name__}: {exc}"
                with transaction(session):
                    q.finish_run(session, run_id, "failed", utcnow(), error=message[:2000])
                outcomes.append(RunOutcome(item.id, item.next_run_at, "failed", error=message))
                continue
            with transaction(session):
                q.finish_run(session, run_id, "done", utcnow(), file_name=name, records=records)
            outcomes.append(RunOutcome(item.id, item.next_run_at, "done", name))
    finally:
        session.close()
    return outcomes
