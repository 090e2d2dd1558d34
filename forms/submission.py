"""Submission XML → ``SubmissionRecord``: routing header, values by the form's structure, entities.

Submissions come from devices we do not control, so parsing is tolerant (unknown nodes are kept and
listed, a missing non-relevant node is fine, a default ``xmlns`` on the root is ignored) but the XML
itself goes through ``forms.safe_xml``. The form is identified by the root's ``id``/``version``
attributes, never by the root tag (older forms use other root names, xlsform.md §2.2).
"""

from __future__ import annotations

import copy
import dataclasses
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lxml import etree

from forms.errors import SubmissionError, XmlRejectedError
from forms.record import EntityChange, SubmissionRecord
from forms.safe_xml import parse_untrusted_xml
from forms.schema import EntityDeclaration, FormSchema

_INDEX_RE = re.compile(r"\[\d+\]")
# A time part followed by an offset lacking minutes ("+03") or its colon ("+0300").
_SHORT_OFFSET_RE = re.compile(r"(\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)([+-])(\d{2})(\d{2})?$")
_ENCRYPTED_MARKERS = ("base64EncryptedKey", "encryptedXmlFile")
_META_NAMES = ("instanceID", "deprecatedID", "instanceName")
# lxml tag filters matching a local name in any namespace (or none); the matching runs in C.
_ROOT_HEADER_TAGS = tuple(f"{{*}}{name}" for name in ("meta", *_ENCRYPTED_MARKERS))
_META_HEADER_TAGS = tuple(f"{{*}}{name}" for name in _META_NAMES)


@dataclass(frozen=True, slots=True)
class SubmissionHeader:
    """What routing needs before the form version is known: identity and the instance ids."""

    form_id: str
    version: str
    instance_id: str | None
    deprecated_id: str | None
    encrypted: bool
    root_name: str


def _local(element: etree._Element) -> str:
    tag = element.tag
    if not isinstance(tag, str):
        return ""  # comments and processing instructions
    # "{namespace}name" or "name": string slicing is several times cheaper than etree.QName on this hot path.
    return tag.rpartition("}")[2]


def _elements(element: etree._Element) -> list[etree._Element]:
    return [child for child in element if _local(child)]


def _text(element: etree._Element) -> str:
    if len(element) == 0:
        # No child nodes at all (comments and processing instructions count): the text is ``.text``,
        # read in C; itertext is only needed to skip comments inside mixed content.
        return element.text or ""
    return _joined_text(element)


def _joined_text(element: etree._Element) -> str:
    return "".join(t if isinstance(t, str) else t.decode() for t in element.itertext())


def _child(element: etree._Element, name: str) -> etree._Element | None:
    """The first child element named ``name``; an empty name (a path with an empty step) names none."""
    for child in element:
        # _local gives "" for comments and PIs: without the name check, an empty step would pick
        # a comment, whose text cannot be read as an element's.
        if name and _local(child) == name:
            return child
    return None


# Ingestion reads the header (to find the form version) and then the whole record from the same
# bytes object: remember the last tree per thread so the document is parsed once. Keyed by identity
# of an immutable ``bytes`` object that the memo keeps alive, so a hit is always the same content;
# the tree is only read, never changed, by this module.
_last_parse = threading.local()


def _parse(xml: bytes) -> etree._Element:
    if getattr(_last_parse, "xml", None) is xml:
        root: etree._Element = _last_parse.root
        return root
    try:
        root = parse_untrusted_xml(xml)
    except XmlRejectedError as exc:
        raise SubmissionError(exc.code, exc.message) from exc
    _last_parse.xml, _last_parse.root = xml, root
    return root


def _meta_texts(meta: etree._Element | None) -> dict[str, str | None]:
    """The stripped text (``None`` when blank) of the first meta child with each of ``_META_NAMES``."""
    found: dict[str, str | None] = {}
    if meta is None:
        return found
    for child in meta.iterchildren(*_META_HEADER_TAGS):
        name = _local(child)
        if name not in found:
            found[name] = _text(child).strip() or None
    return found


def _header(root: etree._Element) -> tuple[SubmissionHeader, str | None]:
    """The routing header and meta/instanceName; only the root's meta and encryption markers are visited."""
    form_id = (root.get("id") or "").strip()
    if not form_id:
        raise SubmissionError("form_id_missing", "The submission's root element has no id attribute.")
    meta: etree._Element | None = None
    has_encrypted_marker = False
    for child in root.iterchildren(*_ROOT_HEADER_TAGS):
        if _local(child) != "meta":
            has_encrypted_marker = True
        elif meta is None:  # the first meta counts, as for any named child
            meta = child
    encrypted = (root.get("encrypted") or "").strip().lower() in ("yes", "true") or has_encrypted_marker
    meta_texts = _meta_texts(meta)
    instance_id = meta_texts.get("instanceID") or (root.get("instanceID") or "").strip() or None
    header = SubmissionHeader(
        form_id=form_id,
        version=(root.get("version") or "").strip(),
        instance_id=instance_id,
        deprecated_id=meta_texts.get("deprecatedID"),
        encrypted=encrypted,
        root_name=_local(root),
    )
    return header, meta_texts.get("instanceName")


def rewrite_as_edit(xml: bytes, instance_id: str, deprecated_id: str) -> bytes:
    """Return the submission as an edit: ``meta/instanceID`` set to ``instance_id`` and ``meta/deprecatedID``
    to ``deprecated_id`` (both created when absent, in the meta's namespace), everything else unchanged.

    What ODK Collect writes when a sent form is edited; a reviewer uses it to keep a second, different
    XML that arrived under an instance id already stored. Encrypted submissions cannot be rewritten.
    """
    root = copy.deepcopy(_parse(xml))
    header, _ = _header(root)
    if header.encrypted:
        raise SubmissionError("encrypted", "An encrypted submission cannot be rewritten as an edit.")
    meta = next((c for c in root.iterchildren("{*}meta")), None)
    if meta is None:
        root_namespace = etree.QName(root).namespace
        meta = etree.SubElement(root, f"{{{root_namespace}}}meta" if root_namespace else "meta")
    namespace = etree.QName(meta).namespace
    for name, value in (("instanceID", instance_id), ("deprecatedID", deprecated_id)):
        node = next((c for c in meta.iterchildren(f"{{*}}{name}")), None)
        if node is None:
            node = etree.SubElement(meta, f"{{{namespace}}}{name}" if namespace else name)
        for child in list(node):
            node.remove(child)
        node.text = value
    declaration = xml.lstrip().startswith(b"<?xml")
    return bytes(etree.tostring(root, encoding="utf-8", xml_declaration=declaration))


def read_submission_header(xml: bytes) -> SubmissionHeader:
    """Read form id, version, instance ids and the encrypted flag (cheap: no schema needed)."""
    return _header(_parse(xml))[0]


@dataclass(frozen=True, slots=True)
class _SchemaPaths:
    """Path sets derived from one schema, computed once per schema object rather than per submission."""

    repeats: frozenset[str]
    known: frozenset[str]
    binary: frozenset[str]
    # Every binary path and each of its ancestors: the attachment walk skips any other subtree.
    binary_and_ancestors: frozenset[str]


class _SchemaPathsCache(threading.local):
    # FormSchema is unhashable (it holds dicts) and, with slots, cannot be weakly referenced, so the
    # cache is keyed by id(). Each entry holds the schema itself: while it is cached its id cannot be
    # reused by another object, and the ``is`` check makes a stale id impossible to match. Per thread,
    # so no locking; bounded because workers may see many form versions over time.
    limit = 32

    def __init__(self) -> None:
        self.by_id: dict[int, tuple[FormSchema, _SchemaPaths]] = {}


_schema_paths_cache = _SchemaPathsCache()


def _schema_paths(schema: FormSchema) -> _SchemaPaths:
    entry = _schema_paths_cache.by_id.get(id(schema))
    if entry is not None and entry[0] is schema:
        return entry[1]
    binary = frozenset(f.path for f in schema.fields if f.bind_type == "binary")
    ancestors = {path.rsplit("/", depth)[0] for path in binary for depth in range(path.count("/") + 1)}
    paths = _SchemaPaths(
        repeats=frozenset(f.path for f in schema.repeats),
        known=frozenset(f.path for f in schema.fields),
        binary=binary,
        binary_and_ancestors=frozenset(ancestors),
    )
    if len(_schema_paths_cache.by_id) >= _schema_paths_cache.limit:
        _schema_paths_cache.by_id.clear()
    _schema_paths_cache.by_id[id(schema)] = (schema, paths)
    return paths


class _Reader:
    def __init__(self, paths: _SchemaPaths | None) -> None:
        self.repeats: frozenset[str] = paths.repeats if paths is not None else frozenset()
        self.known: frozenset[str] | None = paths.known if paths is not None else None
        self.unknown: list[str] = []
        self._unknown_seen: set[str] = set()

    def values(self, element: etree._Element, prefix: str) -> dict[str, Any]:
        """The element's children by local name; ``prefix`` is the element's path plus "/" ("" at the root).

        This runs once per element of every submission, so it reads each child's tag once and
        tests for children with ``len`` (C) instead of calling helpers per child.
        """
        out: dict[str, Any] = {}
        repeated_unknown: set[str] = set()  # names already turned into a list under this parent
        known = self.known
        for child in element:
            tag = child.tag
            if not isinstance(tag, str):
                continue  # comments and processing instructions
            name = tag.rpartition("}")[2]
            path = prefix + name
            if known is not None and path not in known and path not in self._unknown_seen:
                self._unknown_seen.add(path)
                self.unknown.append(path)
            # No child nodes at all (comments and processing instructions count): a plain leaf. Child
            # nodes that are all comments or PIs give no values: a leaf whose text skips them. Any
            # child element makes a group (a group's dict is never empty).
            value: Any = (self.values(child, path + "/") or _joined_text(child)) if len(child) else (child.text or "")
            if path in self.repeats:
                if isinstance(value, str):
                    value = {}  # an empty repeat instance: <member/>
                out.setdefault(name, []).append(value)
            elif name in out:
                # A name the form does not say repeats occurs again: keep every occurrence, in order.
                previous = out[name]
                if name in repeated_unknown:
                    previous.append(value)
                else:
                    out[name] = [previous, value]
                    repeated_unknown.add(name)
            else:
                out[name] = value
        return out


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "true()", "yes")


def _int_or_none(value: str | None) -> int | None:
    try:
        return int((value or "").strip())
    except ValueError:
        return None


def _find_relative(context: etree._Element, relative: str) -> etree._Element | None:
    node: etree._Element | None = context
    for step in relative.split("/"):
        if node is None:
            return None
        node = _child(node, step)
    return node


def _declaration_for(schema: FormSchema | None, list_name: str, scope: str | None) -> EntityDeclaration | None:
    if schema is None:
        return None
    same_list = [d for d in schema.entities if d.list_name == list_name]
    for declaration in same_list:
        if declaration.repeat == scope:
            return declaration
    return same_list[0] if same_list else None


def _entities(root: etree._Element, schema: FormSchema | None) -> tuple[EntityChange, ...]:
    if next(root.iter("{*}entity"), None) is None:
        # Most submissions have no entity element at all (any namespace); checking that runs in C,
        # while the walk below visits every group in Python.
        return ()
    repeats = _schema_paths(schema).repeats if schema is not None else frozenset()
    changes: list[EntityChange] = []

    def walk(element: etree._Element, prefix: str) -> None:
        for child in _elements(element):
            name = _local(child)
            path = f"{prefix}/{name}" if prefix else name
            if name == "entity" and _local(element) == "meta":
                changes.append(_change(child, element, prefix))
            elif _elements(child):
                walk(child, path)

    def _change(entity: etree._Element, meta: etree._Element, meta_path: str) -> EntityChange:
        # The entity's scope is the element holding its meta: the root or one repeat instance.
        context = meta.getparent()
        scope_path = meta_path.rsplit("/", 1)[0] if "/" in meta_path else ""
        scope = scope_path if scope_path in repeats else None
        list_name = entity.get("dataset") or ""
        declaration = _declaration_for(schema, list_name, scope)
        properties: dict[str, str] = {}
        if declaration is not None and context is not None:
            for prop, field_path in declaration.properties.items():
                relative = field_path[len(scope_path) + 1 :] if scope_path else field_path
                node = _find_relative(context, relative)
                if node is not None:
                    properties[prop] = _text(node)
        label = _child(entity, "label")
        branch = (entity.get("branchId") or "").strip()
        return EntityChange(
            list_name=list_name,
            entity_id=(entity.get("id") or "").strip(),
            create=_flag(entity.get("create")),
            update=_flag(entity.get("update")),
            label=_text(label) if label is not None else None,
            base_version=_int_or_none(entity.get("baseVersion")),
            trunk_version=_int_or_none(entity.get("trunkVersion")),
            branch_id=branch or None,
            properties=properties,
        )

    walk(root, "")
    return tuple(changes)


def _strip_indices(path: str) -> str:
    return _INDEX_RE.sub("", path)


def _attachments(values: Mapping[str, Any], paths: _SchemaPaths) -> tuple[str, ...]:
    """The distinct non-blank values of binary fields, in ``flatten_values`` order.

    Walks the values like ``flatten_values`` but only into subtrees that hold a binary field, so a
    form without binary fields costs nothing.
    """
    found: dict[str, None] = {}  # an ordered set: first occurrence wins, as in the flattened order

    def add(path: str, value: str) -> None:
        name = value.strip()
        if name and path in paths.binary:
            found.setdefault(name)

    def walk(values: Mapping[str, Any], prefix: str) -> None:
        for name, value in values.items():
            path = prefix + name  # without repeat indices: the schema's path
            if path not in paths.binary_and_ancestors:
                continue
            if isinstance(value, str):
                add(path, value)
            elif isinstance(value, Mapping):
                walk(value, path + "/")
            elif isinstance(value, list):
                for item in value:
                    if isinstance(item, Mapping):
                        walk(item, path + "/")
                    else:
                        add(path, str(item))

    if paths.binary:
        walk(values, "")
    return tuple(found)


def _encrypted_attachments(root: etree._Element) -> tuple[str, ...]:
    names: list[str] = []
    for element in root.iter():
        local = _local(element)
        parent = element.getparent()
        is_media_file = local == "file" and parent is not None and _local(parent) == "media"
        if local == "encryptedXmlFile" or is_media_file:
            name = _text(element).strip()
            if name and name not in names:
                names.append(name)
    return tuple(names)


def parse_submission(
    xml: bytes, schema: FormSchema | None = None, *, instance_id_fallback: str | None = None
) -> SubmissionRecord:
    """Parse submission XML into a ``SubmissionRecord``, using ``schema`` for repeats and attachments.

    Without meta/instanceID (or a root ``instanceID`` attribute) the submission is refused with
    ``no_instance_id`` unless the caller supplies ``instance_id_fallback`` (e.g. a content hash for
    legacy 2011-era Collect submissions that predate instanceID).
    """
    root = _parse(xml)
    header, instance_name = _header(root)
    if not header.instance_id and instance_id_fallback:
        header = dataclasses.replace(header, instance_id=instance_id_fallback)
    if not header.instance_id:
        raise SubmissionError("no_instance_id", "The submission has no meta/instanceID.")
    if header.encrypted:
        # The payload is ciphertext: keep the envelope as sent, the schema does not describe it.
        reader = _Reader(None)
        return SubmissionRecord(
            form_id=header.form_id,
            version=header.version,
            instance_id=header.instance_id,
            values=reader.values(root, ""),
            deprecated_id=header.deprecated_id,
            attachments=_encrypted_attachments(root),
            encrypted=True,
        )
    paths = _schema_paths(schema) if schema is not None else None
    reader = _Reader(paths)
    values = reader.values(root, "")
    return SubmissionRecord(
        form_id=header.form_id,
        version=header.version,
        instance_id=header.instance_id,
        values=values,
        deprecated_id=header.deprecated_id,
        instance_name=instance_name,
        attachments=_attachments(values, paths) if paths is not None else (),
        unknown_paths=tuple(reader.unknown),
        entities=_entities(root, schema),
        encrypted=False,
    )


def flatten_values(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten record values to ``path -> text`` with 1-based repeat indices (``member[2]/child[1]/cname``)."""
    flat: dict[str, str] = {}
    for name, value in values.items():
        path = f"{prefix}/{name}" if prefix else name
        if isinstance(value, str):
            flat[path] = value
        elif isinstance(value, Mapping):
            flat.update(flatten_values(value, path))
        elif isinstance(value, list):
            for index, item in enumerate(value, start=1):
                indexed = f"{path}[{index}]"
                if isinstance(item, Mapping):
                    flat.update(flatten_values(item, indexed))
                else:
                    flat[indexed] = str(item)
    return flat


def strip_repeat_indices(path: str) -> str:
    """Return a flattened path without its repeat indices: ``member[2]/cname`` → ``member/cname``."""
    return _strip_indices(path)


def normalize_datetime_offset(value: str) -> str:
    """Complete a short UTC offset (``+03`` or ``+0300``) to ``+03:00``; other values are unchanged."""
    found = _SHORT_OFFSET_RE.search(value.strip())
    if not found:
        return value
    time_part, sign, hours, minutes = found.groups()
    stripped = value.strip()
    return f"{stripped[: found.start()]}{time_part}{sign}{hours}:{minutes or '00'}"
