"""OData 4.0 documents of a form's submissions: the EDMX ``$metadata`` and the JSON entities (pure).

The feed is built on the export's rows (``exports.rows``), so an OData row holds exactly the cleaned
values the CSV export writes, under the same keys: a submission's ``__id`` is the CSV ``KEY`` (its
instanceID), a repeat row's ``__id`` is its CSV ``KEY`` and its parent key is its CSV ``PARENT_KEY``.

Shapes follow ODK Central's feed:
- one entity type per table: ``Submissions`` and, per repeat, ``Submissions.<path with dots>``; each
  keyed by ``__id``; a repeat row carries its parent's key as ``__Submissions-id`` (or
  ``__Submissions-<parent repeat path with dashes>-id`` for a nested repeat);
- groups are complex types nested like the form; ``__system`` is the submission's metadata;
- types: ``int`` → ``Edm.Int64``, ``decimal`` → ``Edm.Decimal``, ``date`` → ``Edm.Date``,
  ``dateTime`` → ``Edm.DateTimeOffset``, ``boolean`` → ``Edm.Boolean``, ``geopoint`` /
  ``geotrace`` / ``geoshape`` → ``Edm.GeographyPoint`` / ``LineString`` / ``Polygon`` (GeoJSON in
  the feed, WKT text with ``$wkt=true``), every other type ``Edm.String``;
- a repeat inside a row is a navigation property: ``<name>@odata.navigationLink`` unless expanded.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import quoteattr

from exports.cleaning import CleaningReport
from exports.options import ExportOptions
from exports.records import ExportRecord
from exports.rows import row_builder
from exports.tables import ExportPlan, plan_tables
from forms.schema import FormSchema

# The export layout the feed is built on: one raw column per field (no split geopoint), rejected
# submissions included (Central's feed has them, with their review state), edits and deleted left out.
FEED_OPTIONS = ExportOptions(split_geopoint=False, include_rejected=True, separator="/")
EDM_TYPES = {
    "int": "Edm.Int64",
    "decimal": "Edm.Decimal",
    "date": "Edm.Date",
    "dateTime": "Edm.DateTimeOffset",
    "boolean": "Edm.Boolean",
    "geopoint": "Edm.GeographyPoint",
    "geotrace": "Edm.GeographyLineString",
    "geoshape": "Edm.GeographyPolygon",
}
SYSTEM_PROPERTIES = (
    ("submissionDate", "Edm.DateTimeOffset"),
    ("updatedAt", "Edm.DateTimeOffset"),
    ("deletedAt", "Edm.DateTimeOffset"),
    ("submitterId", "Edm.String"),
    ("submitterName", "Edm.String"),
    ("attachmentsPresent", "Edm.Int64"),
    ("attachmentsExpected", "Edm.Int64"),
    ("status", "Edm.String"),
    ("reviewState", "Edm.String"),
    ("deviceId", "Edm.String"),
    ("edits", "Edm.Int64"),
    ("formVersion", "Edm.String"),
)
SYSTEM_NAMESPACE = "org.opendatakit.submission"
ROOT_SET = "Submissions"
_NOT_IDENTIFIER = re.compile(r"[^\w]", re.UNICODE)


def namespace_of(form_id: str) -> str:
    """The schema namespace of a form's types (dotted identifiers: other characters become ``_``)."""
    return "org.opendatakit.user." + (_NOT_IDENTIFIER.sub("_", form_id) or "_")


@dataclass(frozen=True, slots=True)
class FeedTable:
    """One entity set: its name, the repeat it holds, where its rows sit in the parent's row."""

    index: int
    name: str  # "Submissions" or "Submissions.group.repeat"
    repeat_path: str | None
    parent: int | None  # index of the parent table
    rel: tuple[str, ...]  # the repeat's path relative to the parent table's row
    parent_key: str | None  # the property holding the parent's __id
    columns: tuple[tuple[int, tuple[str, ...], str], ...]  # (cell index, nested path, bind type)
    key_at: int
    parent_key_at: int | None


@dataclass(frozen=True)
class Feed:
    """The compiled OData view of a form: its plan, tables by name, and rows as entities."""

    form_id: str
    plan: ExportPlan
    tables: tuple[FeedTable, ...]
    by_name: Mapping[str, FeedTable] = field(default_factory=dict)
    children: Mapping[int, tuple[FeedTable, ...]] = field(default_factory=dict)

    def table(self, name: str) -> FeedTable | None:
        """The table named ``name`` (``Submissions``, ``Submissions.group.repeat``), if any."""
        return self.by_name.get(name)


def _table_name(repeat_path: str | None) -> str:
    return ROOT_SET if repeat_path is None else ROOT_SET + "." + repeat_path.replace("/", ".")


def _relative(path: str, table_repeat: str | None) -> tuple[str, ...]:
    rel = path if table_repeat is None else path[len(table_repeat) + 1 :]
    return tuple(rel.split("/"))


def compile_feed(schemas: Sequence[FormSchema]) -> Feed:
    """Compile the feed of a form from all its versions (oldest first, as ``plan_tables``)."""
    plan = plan_tables(schemas, FEED_OPTIONS)
    index_of = {t.repeat_path: i for i, t in enumerate(plan.tables)}
    tables: list[FeedTable] = []
    for i, t in enumerate(plan.tables):
        cols = tuple(
            (n, _relative(c.path, t.repeat_path), plan.fields[c.path].bind_type)
            for n, c in enumerate(t.columns)
            if c.kind == "value"
        )
        headers = t.headers
        parent = None if t.repeat_path is None else index_of[t.parent_repeat]
        rel: tuple[str, ...] = () if t.repeat_path is None else _relative(t.repeat_path, t.parent_repeat)
        parent_key = None
        if t.repeat_path is not None:
            parent_key = (
                "__Submissions-id"
                if t.parent_repeat is None
                else f"__Submissions-{t.parent_repeat.replace('/', '-')}-id"
            )
        tables.append(
            FeedTable(
                i,
                _table_name(t.repeat_path),
                t.repeat_path,
                parent,
                rel,
                parent_key,
                cols,
                headers.index("KEY"),
                headers.index("PARENT_KEY") if t.repeat_path is not None else None,
            )
        )
    children: dict[int, list[FeedTable]] = {}
    for ft in tables:
        if ft.parent is not None:
            children.setdefault(ft.parent, []).append(ft)
    return Feed(
        plan.form_id,
        plan,
        tuple(tables),
        {t.name: t for t in tables},
        {k: tuple(v) for k, v in children.items()},
    )


# --- values ---------------------------------------------------------------------------------------


def _coordinates(text: str) -> list[list[float]] | None:
    points: list[list[float]] = []
    for part in text.split(";"):
        numbers = part.split()
        if len(numbers) < 2:
            continue
        try:
            lat, lon = float(numbers[0]), float(numbers[1])
            alt = [float(numbers[2])] if len(numbers) > 2 else []
        except ValueError:
            return None
        points.append([lon, lat, *alt])
    return points or None


def _wkt_point(point: list[float]) -> str:
    return " ".join(repr(c).removesuffix(".0") for c in point)


def geo_value(text: str, bind_type: str, wkt: bool) -> Any:
    """A geopoint, geotrace or geoshape as GeoJSON (``wkt``: as Well-Known Text); ``None`` if unreadable."""
    points = _coordinates(text)
    if points is None:
        return None
    if bind_type == "geopoint":
        if wkt:
            return f"POINT ({_wkt_point(points[0])})"
        value: dict[str, Any] = {"type": "Point", "coordinates": points[0]}
        numbers = text.split()
        if len(numbers) > 3:
            with suppress(ValueError):
                value["properties"] = {"accuracy": float(numbers[3])}
        return value
    if bind_type == "geotrace":
        if wkt:
            return "LINESTRING (" + ", ".join(_wkt_point(p) for p in points) + ")"
        return {"type": "LineString", "coordinates": points}
    if wkt:
        return "POLYGON ((" + ", ".join(_wkt_point(p) for p in points) + "))"
    return {"type": "Polygon", "coordinates": [points]}


def typed_value(text: str, bind_type: str, wkt: bool = False) -> Any:
    """The JSON value of one cleaned cell for its field's type (``""`` → ``None``)."""
    if text == "":
        return None
    if bind_type == "int":
        try:
            return int(text)
        except ValueError:
            return None
    if bind_type == "decimal":
        try:
            number = float(text)
        except ValueError:
            return None
        return number if number == number and abs(number) != float("inf") else None
    if bind_type == "boolean":
        return text in ("true", "1")
    if bind_type in ("geopoint", "geotrace", "geoshape"):
        return geo_value(text, bind_type, wkt)
    return text


def _put(target: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = target
    for seg in path[:-1]:
        child = node.get(seg)
        if not isinstance(child, dict):
            child = node[seg] = {}
        node = child
    node[path[-1]] = value


def _system(rec: ExportRecord) -> dict[str, Any]:
    def iso(moment: Any) -> str | None:
        if moment is None:
            return None
        text: str = moment.isoformat(timespec="milliseconds")
        return text.replace("+00:00", "Z")

    from datetime import UTC

    return {
        "submissionDate": iso(rec.submission_date.astimezone(UTC)),
        "updatedAt": iso(rec.updated_at.astimezone(UTC)) if rec.updated_at else None,
        "deletedAt": None,
        "submitterId": str(rec.submitter_id) if rec.submitter_id is not None else None,
        "submitterName": rec.submitter or None,
        "attachmentsPresent": rec.attachments_present,
        "attachmentsExpected": rec.attachments_expected,
        "status": None,
        "reviewState": None if rec.review_state in (None, "received") else rec.review_state,
        "deviceId": rec.device_id or None,
        "edits": rec.edits,
        "formVersion": rec.form_version,
    }


def system_properties(rec: ExportRecord) -> dict[str, Any]:
    """The ``__system`` members of a submission as the feed shows them (what ``$filter`` compares)."""
    return _system(rec)


def _link(entity_path: str, rel: tuple[str, ...]) -> str:
    return entity_path + "/" + "/".join(rel)


def _key_literal(key: str) -> str:
    return "'" + key.replace("'", "''") + "'"


@dataclass
class SubmissionEntities:
    """One submission's rows as entities: the root, and every repeat row by table, with their links."""

    root: dict[str, Any]
    by_table: dict[int, list[dict[str, Any]]]


def submission_entities(
    feed: Feed, rows: Sequence[tuple[int, list[str]]], rec: ExportRecord, *, wkt: bool, expand: bool
) -> SubmissionEntities:
    """Turn one submission's export rows into entities (repeats inline when ``expand``, else links)."""
    by_key: dict[str, tuple[dict[str, Any], str]] = {}  # key → (entity, its path for links)
    by_table: dict[int, list[dict[str, Any]]] = {}
    root: dict[str, Any] = {}
    for index, cells in rows:
        table = feed.tables[index]
        key = cells[table.key_at]
        entity: dict[str, Any] = {"__id": key}
        for at, path, bind in table.columns:
            _put(entity, path, typed_value(cells[at], bind, wkt))
        if table.parent_key_at is None:
            entity["__system"] = _system(rec)
            path_of = f"{ROOT_SET}({_key_literal(key)})"
            root = entity
        else:
            parent_key = cells[table.parent_key_at]
            entity[table.parent_key or ""] = parent_key
            parent, parent_path = by_key[parent_key]
            path_of = f"{_link(parent_path, table.rel)}({_key_literal(key)})"
            if expand:
                holder = parent
                for seg in table.rel[:-1]:
                    holder = holder.setdefault(seg, {})
                holder.setdefault(table.rel[-1], []).append(entity)
        by_key[key] = (entity, path_of)
        by_table.setdefault(index, []).append(entity)
        for child in feed.children.get(index, ()):
            holder = entity
            for seg in child.rel[:-1]:
                holder = holder.setdefault(seg, {})
            if expand:
                holder.setdefault(child.rel[-1], [])
            else:
                holder[child.rel[-1] + "@odata.navigationLink"] = _link(path_of, child.rel)
    return SubmissionEntities(root, by_table)


def iter_submission_entities(
    feed: Feed, records: Iterator[ExportRecord] | Sequence[ExportRecord], *, wkt: bool = False, expand: bool = False
) -> Iterator[tuple[ExportRecord, SubmissionEntities]]:
    """Every exported submission of ``records`` with its entities, one at a time (memory stays flat)."""
    builder = row_builder(feed.plan, FEED_OPTIONS)
    report = CleaningReport()
    for rec in records:
        rows = builder.rows(rec, report)
        if rows:
            yield rec, submission_entities(feed, rows, rec, wkt=wkt, expand=expand)
        report.changes.clear()  # the feed has no cleaning report: keep memory flat


def lookup_in(entity: Mapping[str, Any], segments: Sequence[str]) -> Any:
    """The value at ``segments`` in a (nested) entity; ``None`` when absent."""
    node: Any = entity
    for seg in segments:
        if not isinstance(node, Mapping):
            return None
        node = node.get(seg)
    return node


def known_paths(feed: Feed, table: FeedTable) -> set[tuple[str, ...]]:
    """Every member path ``$filter``/``$select`` may name in ``table`` (fields, groups, keys, ``__system``)."""
    out: set[tuple[str, ...]] = {("__id",)}
    for _, path, _ in table.columns:
        for n in range(1, len(path) + 1):
            out.add(path[:n])
    if table.parent_key:
        out.add((table.parent_key,))
    out.add(("__system",))
    out.update(("__system", name) for name, _ in SYSTEM_PROPERTIES)
    for child in feed.children.get(table.index, ()):
        for n in range(1, len(child.rel) + 1):
            out.add(child.rel[:n])
    return out


def select_paths(entity: Mapping[str, Any], paths: Sequence[tuple[str, ...]]) -> dict[str, Any]:
    """Only the members ``paths`` name (with their nesting), as ``$select`` asks."""
    out: dict[str, Any] = {}
    for path in paths:
        value = lookup_in(entity, path)
        link = lookup_in(entity, (*path[:-1], path[-1] + "@odata.navigationLink"))
        if link is not None:
            _put(out, (*path[:-1], path[-1] + "@odata.navigationLink"), link)
        if value is not None or link is None:
            _put(out, path, value)
    return out


# --- $metadata -----------------------------------------------------------------------------------


class _TypeTree:
    """Groups of one table as nested complex types, with their properties in form order."""

    def __init__(self) -> None:
        self.props: dict[str, Any] = {}  # name → Edm type (str), _TypeTree (group) or ("nav", table name)

    def child(self, name: str) -> _TypeTree:
        found = self.props.get(name)
        if not isinstance(found, _TypeTree):
            found = self.props[name] = _TypeTree()
        return found


def _table_tree(feed: Feed, table: FeedTable) -> _TypeTree:
    tree = _TypeTree()
    for _, path, bind in table.columns:
        node = tree
        for seg in path[:-1]:
            node = node.child(seg)
        node.props[path[-1]] = EDM_TYPES.get(bind, "Edm.String")
    for child in feed.children.get(table.index, ()):
        node = tree
        for seg in child.rel[:-1]:
            node = node.child(seg)
        node.props[child.rel[-1]] = ("nav", child.name)
    return tree


def _complex_types(ns: str, prefix: str, tree: _TypeTree, out: list[str]) -> list[str]:
    lines: list[str] = []
    for name, kind in tree.props.items():
        if isinstance(kind, _TypeTree):
            type_name = f"{prefix}.{name}"
            lines.append(f"<Property Name={quoteattr(name)} Type={quoteattr(ns + '.' + type_name)}/>")
            inner = _complex_types(ns, type_name, kind, out)
            out.append(f"<ComplexType Name={quoteattr(type_name)}>{''.join(inner)}</ComplexType>")
        elif isinstance(kind, tuple):
            lines.append(
                f"<NavigationProperty Name={quoteattr(name)} Type={quoteattr(f'Collection({ns}.{kind[1]})')}/>"
            )
        else:
            lines.append(f"<Property Name={quoteattr(name)} Type={quoteattr(kind)}/>")
    return lines


def metadata_document(feed: Feed) -> str:
    """The EDMX ``$metadata`` of the feed (OData 4.0 CSDL XML)."""
    ns = namespace_of(feed.form_id)
    system = "".join(f"<Property Name={quoteattr(n)} Type={quoteattr(t)}/>" for n, t in SYSTEM_PROPERTIES)
    complex_types: list[str] = []
    entity_types: list[str] = []
    sets: list[str] = []
    for table in feed.tables:
        props = _complex_types(ns, table.name, _table_tree(feed, table), complex_types)
        head = ['<Key><PropertyRef Name="__id"/></Key>', '<Property Name="__id" Type="Edm.String"/>']
        if table.parent_key is None:
            head.append(f'<Property Name="__system" Type="{SYSTEM_NAMESPACE}.metadata"/>')
        else:
            head.append(f'<Property Name={quoteattr(table.parent_key)} Type="Edm.String"/>')
        entity_types.append(f"<EntityType Name={quoteattr(table.name)}>{''.join(head + props)}</EntityType>")
        sets.append(f"<EntitySet Name={quoteattr(table.name)} EntityType={quoteattr(ns + '.' + table.name)}/>")
    container = _NOT_IDENTIFIER.sub("_", feed.form_id) or "_"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<edmx:Edmx xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx" Version="4.0">'
        "<edmx:DataServices>"
        f'<Schema xmlns="http://docs.oasis-open.org/odata/ns/edm" Namespace="{SYSTEM_NAMESPACE}">'
        f'<ComplexType Name="metadata">{system}</ComplexType>'
        "</Schema>"
        f'<Schema xmlns="http://docs.oasis-open.org/odata/ns/edm" Namespace={quoteattr(ns)}>'
        + "".join(entity_types)
        + "".join(complex_types)
        + f"<EntityContainer Name={quoteattr(container)}>"
        + "".join(sets)
        + "</EntityContainer></Schema></edmx:DataServices></edmx:Edmx>"
    )


def service_document(feed: Feed, base: str) -> dict[str, Any]:
    """The JSON service document: every entity set of the feed."""
    return {
        "@odata.context": f"{base}/$metadata",
        "value": [{"name": t.name, "kind": "EntitySet", "url": t.name} for t in feed.tables],
    }


# --- the query options ---------------------------------------------------------------------------

ORDERABLE = {("__system", "submissionDate"): "submissionDate", ("__id",): "__id"}


class ODataQueryError(ValueError):
    """A system query option that does not parse; ``option`` names it (``$top``, ``$filter``)."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option
        self.message = message


@dataclass(frozen=True)
class ODataQuery:
    """The system query options of one feed request, parsed (``$filter`` is text; see ``odata_filter``)."""

    top: int | None = None
    skip: int = 0
    count: bool = False
    select: tuple[tuple[str, ...], ...] | None = None
    expand: bool = False
    wkt: bool = False
    filter: str | None = None
    descending: bool = False
    skiptoken: int = 0  # rows already served by the previous pages


def _boolean(option: str, raw: str) -> bool:
    if raw.lower() in ("true", "false"):  # pyodk sends Python's True / False
        return raw.lower() == "true"
    raise ODataQueryError(option, f"must be true or false, not {raw!r}")


def _count(option: str, raw: str) -> int:
    if not raw.isdigit() or len(raw) > 9:
        raise ODataQueryError(option, f"must be a non-negative integer, not {raw!r}")
    return int(raw)


def parse_query(args: Mapping[str, str], decode_token: Any = None) -> ODataQuery:
    """Parse ``$top $skip $count $select $expand $wkt $filter $orderby $skiptoken`` (others are ignored)."""
    top = _count("$top", args["$top"]) if "$top" in args else None
    skip = _count("$skip", args["$skip"]) if "$skip" in args else 0
    count = _boolean("$count", args["$count"]) if "$count" in args else False
    wkt = _boolean("$wkt", args["$wkt"]) if "$wkt" in args else False
    select = None
    if "$select" in args:
        items = [s.strip() for s in args["$select"].split(",") if s.strip()]
        if not items:
            raise ODataQueryError("$select", "names no property")
        select = None if "*" in items else tuple(tuple(s.split("/")) for s in items)
    expand = False
    if "$expand" in args:
        if args["$expand"].strip() != "*":
            raise ODataQueryError("$expand", "only * (every repeat) is supported")
        expand = True
    descending = False
    if "$orderby" in args:
        parts = args["$orderby"].split()
        if not parts or len(parts) > 2 or tuple(parts[0].split("/")) not in ORDERABLE:
            raise ODataQueryError("$orderby", "only __system/submissionDate or __id, asc or desc, are supported")
        if len(parts) == 2 and parts[1] not in ("asc", "desc"):
            raise ODataQueryError("$orderby", f"the direction must be asc or desc, not {parts[1]!r}")
        descending = len(parts) == 2 and parts[1] == "desc"
    token = 0
    if "$skiptoken" in args and decode_token is not None:
        token = decode_token(args["$skiptoken"])
    text = args.get("$filter")
    if text is not None and not text.strip():
        raise ODataQueryError("$filter", "is empty")
    return ODataQuery(top, skip, count, select, expand, wkt, text, descending, token)


# --- entity lists ---------------------------------------------------------------------------------

ENTITY_NAMESPACE = "org.opendatakit.entity"
ENTITY_SET = "Entities"
ENTITY_SYSTEM = (
    ("createdAt", "Edm.DateTimeOffset"),
    ("creatorId", "Edm.String"),
    ("creatorName", "Edm.String"),
    ("updates", "Edm.Int64"),
    ("updatedAt", "Edm.DateTimeOffset"),
    ("version", "Edm.Int64"),
    ("conflict", "Edm.String"),
)


def entity_known_paths(properties: Sequence[str]) -> set[tuple[str, ...]]:
    """Every member path an entity list's ``$filter``/``$select`` may name."""
    out: set[tuple[str, ...]] = {("__id",), ("label",), ("__system",)}
    out.update((p,) for p in properties)
    out.update(("__system", n) for n, _ in ENTITY_SYSTEM)
    return out


def entity_metadata_document(list_name: str, properties: Sequence[str]) -> str:
    """The EDMX of an entity list's feed: one ``Entities`` type, properties as text, ``__system``."""
    ns = "org.opendatakit.user." + (_NOT_IDENTIFIER.sub("_", list_name) or "_")
    system = "".join(f"<Property Name={quoteattr(n)} Type={quoteattr(t)}/>" for n, t in ENTITY_SYSTEM)
    props = "".join(f'<Property Name={quoteattr(p)} Type="Edm.String"/>' for p in properties)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<edmx:Edmx xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx" Version="4.0">'
        "<edmx:DataServices>"
        f'<Schema xmlns="http://docs.oasis-open.org/odata/ns/edm" Namespace="{ENTITY_NAMESPACE}">'
        f'<ComplexType Name="metadata">{system}</ComplexType>'
        "</Schema>"
        f'<Schema xmlns="http://docs.oasis-open.org/odata/ns/edm" Namespace={quoteattr(ns)}>'
        f'<EntityType Name="{ENTITY_SET}"><Key><PropertyRef Name="__id"/></Key>'
        '<Property Name="__id" Type="Edm.String"/><Property Name="label" Type="Edm.String"/>'
        f'<Property Name="__system" Type="{ENTITY_NAMESPACE}.metadata"/>{props}</EntityType>'
        f'<EntityContainer Name="{ENTITY_SET}">'
        f'<EntitySet Name="{ENTITY_SET}" EntityType={quoteattr(ns + "." + ENTITY_SET)}/>'
        "</EntityContainer></Schema></edmx:DataServices></edmx:Edmx>"
    )
