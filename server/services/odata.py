"""OData use cases: a form's submissions feed (service document, ``$metadata``, entity sets, one
submission and its repeats) and an entity list's feed.

Everything a client can get wrong (an unknown table, a bad option, a ``$filter`` that does not parse or
names a field the form does not have) is raised before the first byte: the feed is then streamed, one
submission at a time, from the export's record reader (keyset pages of 1,000), so memory stays flat
whatever the number of submissions. ``$filter`` is evaluated on each row as the feed shows it, which is
what lets it name the form's own fields (ODK Central filters only ``__system`` members).

Paging: ``$top`` is a page size, as in Central: with more rows left the page ends with
``@odata.nextLink`` (the same query and a ``$skiptoken``, an opaque count of the rows already
served; the order is the storage order, stable because submissions are only appended).
``Prefer: odata.maxpagesize`` pages the same way. ``$count=true`` counts the matching rows in a first
pass over the same stream.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson
from sqlalchemy.orm import Session

from exports.odata import (
    ROOT_SET,
    Feed,
    FeedTable,
    ODataQuery,
    ODataQueryError,
    compile_feed,
    entity_known_paths,
    entity_metadata_document,
    iter_submission_entities,
    known_paths,
    lookup_in,
    metadata_document,
    parse_query,
    select_paths,
    service_document,
)
from exports.odata_filter import ROOT_PREFIX, Filter, FilterError, parse_filter
from server.db.queries import exports as q
from server.errors import ApiError, bad_request, not_found
from server.services import datasets
from server.services.exports import get_form_or_404

FEED_PAGE = 1000  # records read per database round trip
CHUNK_BYTES = 64 * 1024
FILTER_ERROR = "odata_filter_invalid"
OPTION_ERROR = "odata_option_invalid"


@dataclass
class FeedAnswer:
    """A JSON answer: whole (``body``, for ETags) or streamed (``chunks``)."""

    body: bytes | None = None
    chunks: Iterator[bytes] | None = None
    text: bool = False  # body is text/plain (a /$count)


def _option_error(exc: ODataQueryError) -> ApiError:
    return bad_request(OPTION_ERROR, f"Bad OData query option {exc.option}: {exc.message}", option=exc.option)


def encode_skiptoken(served: int) -> str:
    """The opaque ``$skiptoken`` saying how many rows earlier pages served."""
    return base64.urlsafe_b64encode(json.dumps({"served": served}).encode()).decode().rstrip("=")


def decode_skiptoken(token: str) -> int:
    """The count inside a ``$skiptoken``; 400 when it is not one of ours."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        served = data["served"]
        if not isinstance(served, int) or isinstance(served, bool) or served < 0:
            raise ValueError(served)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise ODataQueryError("$skiptoken", "not a token this server gave") from None
    return served


def _feed(session: Session, project_id: int, xml_form_id: str) -> tuple[Feed, int]:
    form = get_form_or_404(session, project_id, xml_form_id)
    schemas = q.form_schemas(session, form)
    if not schemas:
        raise not_found("Form version", project_id=project_id, form=xml_form_id)
    return compile_feed(schemas), form.id


def metadata(session: Session, project_id: int, xml_form_id: str) -> str:
    """The EDMX document of the form's feed."""
    feed, _ = _feed(session, project_id, xml_form_id)
    session.rollback()
    return metadata_document(feed)


def service(session: Session, project_id: int, xml_form_id: str, base: str) -> dict[str, Any]:
    """The service document: the form's entity sets."""
    feed, _ = _feed(session, project_id, xml_form_id)
    session.rollback()
    return service_document(feed, base)


@dataclass(frozen=True)
class _Resource:
    """What a resource path asks for: a table, optionally under one submission and one parent row."""

    table: FeedTable
    instance_id: str | None = None  # Submissions('<id>')...
    parent_key: str | None = None  # the row whose children are listed; None: every row of the table
    single: bool = False  # Submissions('<id>') itself


def _split_key(segment: str) -> tuple[str, str | None]:
    if not segment.endswith(")") or "(" not in segment:
        return segment, None
    name, _, rest = segment.partition("(")
    literal = rest[:-1]
    if len(literal) < 2 or literal[0] != "'" or literal[-1] != "'":
        raise not_found("OData resource", resource=segment)
    return name, literal[1:-1].replace("''", "'")


def _resource(feed: Feed, path: str) -> _Resource:
    # Keys are quoted and may hold "/" (a repeat row's __id does): split on "/" outside quotes only.
    segments: list[str] = []
    current, quoted = "", False
    for ch in path:
        if ch == "'":
            quoted = not quoted
        if ch == "/" and not quoted:
            segments.append(current)
            current = ""
        else:
            current += ch
    segments.append(current)
    name, key = _split_key(segments[0])
    table = feed.table(name)
    if table is None:
        raise not_found("OData entity set", resource=name)
    if len(segments) == 1:
        if key is not None and table.repeat_path is not None:
            raise not_found("OData resource", resource=path)
        return _Resource(table, key, None, key is not None)
    if key is None or table.repeat_path is not None:
        raise not_found("OData resource", resource=path)
    instance, parent_key, current_table = key, key, table
    rest = segments[1:]
    while rest:
        matched = None
        for child in feed.children.get(current_table.index, ()):
            n = len(child.rel)
            if (
                len(rest) >= n
                and tuple(rest[: n - 1]) == child.rel[:-1]
                and _split_key(rest[n - 1])[0] == child.rel[-1]
            ):
                matched = child
                break
        if matched is None:
            raise not_found("OData resource", resource=path)
        n = len(matched.rel)
        _, row_key = _split_key(rest[n - 1])
        rest = rest[n:]
        current_table = matched
        if row_key is not None:
            if not rest:
                raise not_found("OData resource", resource=path)
            parent_key = row_key
    return _Resource(current_table, instance, parent_key)


def _check_filter(feed: Feed, table: FeedTable, text: str | None) -> Filter | None:
    if text is None:
        return None
    try:
        parsed = parse_filter(text)
    except FilterError as exc:
        raise bad_request(FILTER_ERROR, f"Bad $filter: {exc}", option="$filter") from None
    root_known = known_paths(feed, feed.tables[0])
    own_known = known_paths(feed, table)
    for path in parsed.paths:
        if path[:2] == ROOT_PREFIX:
            if path[2:] not in root_known:
                raise bad_request(FILTER_ERROR, f"Bad $filter: the submission has no {'/'.join(path[2:])!r}")
        elif path not in own_known:
            raise bad_request(
                FILTER_ERROR, f"Bad $filter: {table.name} has no property {'/'.join(path)!r}", option="$filter"
            )
    return parsed


def _rows(
    feed: Feed, records: Any, res: _Resource, options: ODataQuery, parsed: Filter | None
) -> Iterator[dict[str, Any]]:
    """Every row of the resource that passes the filter, in storage order (``records`` closed at the end)."""
    try:
        yield from _matching(feed, records, res, options, parsed)
    finally:
        close = getattr(records, "close", None)
        if close is not None:
            close()  # a page stops reading early: end the reader now, not whenever it is collected


def _matching(
    feed: Feed, records: Any, res: _Resource, options: ODataQuery, parsed: Filter | None
) -> Iterator[dict[str, Any]]:
    for _rec, ents in iter_submission_entities(feed, records, wkt=options.wkt, expand=options.expand):
        root = ents.root
        candidates = [root] if res.table.parent is None else ents.by_table.get(res.table.index, [])
        for row in candidates:
            if res.parent_key is not None and row.get(res.table.parent_key or "") != res.parent_key:
                continue
            if parsed is not None:

                def lookup(path: tuple[str, ...], row: dict[str, Any] = row, root: dict[str, Any] = root) -> Any:
                    if path[:2] == ROOT_PREFIX:
                        return lookup_in(root, path[2:])
                    return lookup_in(row, path)

                if not parsed.matches(lookup):
                    continue
            yield row


def open_feed(
    session: Session,
    project_id: int,
    xml_form_id: str,
    resource: str,
    args: Mapping[str, str],
    base: str,
    max_page: int | None = None,
) -> FeedAnswer:
    """Check the request and return the feed's JSON (whole for one submission, else streamed).

    ``max_page`` is the client's ``Prefer: odata.maxpagesize``: pages of at most that many rows, each
    with ``@odata.nextLink`` while rows are left. A resource ending in ``/$count`` answers the count.
    """
    feed, form_pk = _feed(session, project_id, xml_form_id)
    try:
        options = parse_query(args, decode_skiptoken)
    except ODataQueryError as exc:
        raise _option_error(exc) from None
    count_only = resource.endswith("/$count")
    res = _resource(feed, resource.removesuffix("/$count") if count_only else resource)
    parsed = _check_filter(feed, res.table, options.filter)
    if options.select is not None:
        known = known_paths(feed, res.table)
        for path in options.select:
            if path not in known:
                raise bad_request(OPTION_ERROR, f"Bad $select: {res.table.name} has no property {'/'.join(path)!r}")
    context = f"{base}/$metadata#{res.table.name}"

    def records() -> Any:
        if res.instance_id is not None:
            return q.instance_records(session, form_pk, res.instance_id)
        return q.iter_export_records(session, form_pk, _read_options(), FEED_PAGE, options.descending)

    if count_only:
        total = sum(1 for _ in _rows(feed, records(), res, options, parsed))
        session.rollback()
        return FeedAnswer(body=str(max(0, min(total - options.skip, options.top or total))).encode(), text=True)
    if res.single or res.instance_id is not None:
        rows = list(_rows(feed, records(), res, options, parsed))
        session.rollback()
        if res.single and not rows:
            raise not_found("Submission", instance_id=res.instance_id)
        page = [_shaped(r, options) for r in rows[options.skip :]][: options.top]
        body: dict[str, Any] = {"@odata.context": context}
        if options.count:
            body["@odata.count"] = len(rows)
        body["value"] = page
        return FeedAnswer(body=orjson.dumps(body))
    return FeedAnswer(
        chunks=_stream(
            lambda: _rows(feed, records(), res, options, parsed),
            options,
            context,
            args,
            f"{base}/{res.table.name}",
            max_page,
        )
    )


def _read_options() -> Any:
    from exports.odata import FEED_OPTIONS

    return FEED_OPTIONS


def _shaped(row: dict[str, Any], options: ODataQuery) -> dict[str, Any]:
    return row if options.select is None else select_paths(row, options.select)


def _stream(
    rows: Callable[[], Iterator[dict[str, Any]]],
    options: ODataQuery,
    context: str,
    args: Mapping[str, str],
    link: str,
    max_page: int | None,
) -> Iterator[bytes]:
    """The JSON of one page of ``rows()`` (read once more first for ``$count``), with its next link."""
    head: dict[str, Any] = {"@odata.context": context}
    if options.count:
        with closing(rows()) as counted:  # type: ignore[type-var]
            head["@odata.count"] = sum(1 for _ in counted)
    yield orjson.dumps(head)[:-1] + b',"value":['
    start = options.skiptoken + options.skip
    limits = [n for n in (options.top, max_page) if n is not None]
    page = min(limits) if limits else None
    served = 0
    more = False
    pending: list[bytes] = []
    size = 0
    with closing(rows()) as matching:  # type: ignore[type-var]
        for n, row in enumerate(matching):
            if n < start:
                continue
            if page is not None and served >= page:
                more = True
                break
            chunk = (b"," if served else b"") + orjson.dumps(_shaped(row, options))
            pending.append(chunk)
            size += len(chunk)
            served += 1
            if size >= CHUNK_BYTES:  # one write per ~64 KiB, not one per row
                yield b"".join(pending)
                pending, size = [], 0
    tail = b"".join(pending) + b"]"
    if more:
        # As Central: ``$top`` is a page size, the next link asks for the next ``$top`` rows.
        following = {k: v for k, v in args.items() if k not in ("$skip", "$skiptoken")}
        following["$skiptoken"] = encode_skiptoken(start + served)
        tail += b',"@odata.nextLink":' + orjson.dumps(f"{link}?{urlencode(following)}")
    yield tail + b"}"


def table_names(feed: Feed) -> Sequence[str]:
    """The entity-set names of a feed (for the service document and tests)."""
    return [t.name for t in feed.tables]


__all__ = ["ROOT_SET", "FeedAnswer", "metadata", "open_feed", "service"]


# --- entity lists ---------------------------------------------------------------------------------


def entity_service(session: Session, project_id: int, name: str, base: str) -> dict[str, Any]:
    """The service document of an entity list: one ``Entities`` set."""
    datasets.entity_properties(session, project_id, name)  # 404 for an unknown list
    session.rollback()
    return {
        "@odata.context": f"{base}/$metadata",
        "value": [{"name": "Entities", "kind": "EntitySet", "url": "Entities"}],
    }


def entity_metadata(session: Session, project_id: int, name: str) -> str:
    """The EDMX of an entity list's feed."""
    properties = datasets.entity_properties(session, project_id, name)
    session.rollback()
    return entity_metadata_document(name, properties)


def open_entities_feed(
    session: Session,
    project_id: int,
    name: str,
    resource: str,
    args: Mapping[str, str],
    base: str,
    max_page: int | None = None,
) -> FeedAnswer:
    """The ``Entities`` feed (``$filter`` on ``__system`` members and on the list's properties)."""
    list_id, properties = datasets.feed_list(session, project_id, name)
    if resource not in ("Entities", "Entities/$count"):
        raise not_found("OData entity set", resource=resource)
    try:
        options = parse_query(args, decode_skiptoken)
    except ODataQueryError as exc:
        raise _option_error(exc) from None
    if options.expand:
        raise bad_request(OPTION_ERROR, "Bad OData query option $expand: an entity list has nothing to expand")
    known = entity_known_paths(properties)
    parsed = None
    if options.filter is not None:
        try:
            parsed = parse_filter(options.filter)
        except FilterError as exc:
            raise bad_request(FILTER_ERROR, f"Bad $filter: {exc}", option="$filter") from None
        for path in parsed.paths:
            if path not in known:
                raise bad_request(FILTER_ERROR, f"Bad $filter: Entities has no property {'/'.join(path)!r}")
    for path in options.select or ():
        if path not in known:
            raise bad_request(OPTION_ERROR, f"Bad $select: Entities has no property {'/'.join(path)!r}")

    def rows() -> Iterator[dict[str, Any]]:
        for row in datasets.entity_rows(session, list_id, properties):
            if parsed is None or parsed.matches(lambda path, row=row: lookup_in(row, path)):
                yield row

    if resource.endswith("/$count"):
        total = sum(1 for _ in rows())
        return FeedAnswer(body=str(max(0, min(total - options.skip, options.top or total))).encode(), text=True)
    context = f"{base}/$metadata#Entities"
    return FeedAnswer(chunks=_stream(rows, options, context, args, f"{base}/Entities", max_page))
