"""``parse_submission`` agrees with a plain reference reader.

``parse_submission`` takes shortcuts for speed (leaf text without itertext, tag filters in C, no
entity walk when there is no entity element, an attachment walk pruned to binary fields). The
reference below takes none: it is recursive, reads every text with itertext and every name with
``etree.QName``. Rules: SR1 both agree on every corpus submission, against its form and without a
form; SR2 both agree on hand-written tricky documents; SR3 both agree on generated documents.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from forms.record import EntityChange
from forms.safe_xml import parse_untrusted_xml
from forms.schema import EntityDeclaration, Field, FieldKind, FormSchema
from forms.submission import flatten_values, parse_submission
from tests import corpus_conversions

CORPUS = (Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus").resolve()
FALLBACK_ID = "fallback:1"

# ---------------------------------------------------------------------------------------------
# The reference reader
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    """The parts of a record the reference computes."""

    values: dict[str, Any]
    unknown_paths: tuple[str, ...]
    attachments: tuple[str, ...]
    entities: tuple[EntityChange, ...]
    instance_id: str
    deprecated_id: str | None
    instance_name: str | None
    encrypted: bool


def _is_element(node: etree._Element) -> bool:
    return isinstance(node.tag, str)


def _name(element: etree._Element) -> str:
    return etree.QName(element).localname


def _text(element: etree._Element) -> str:
    return "".join(element.itertext())


def _child_elements(element: etree._Element) -> list[etree._Element]:
    return [child for child in element if _is_element(child)]


def _first_child(element: etree._Element, name: str) -> etree._Element | None:
    return next((child for child in _child_elements(element) if _name(child) == name), None)


def _path(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def _values(
    element: etree._Element, prefix: str, repeats: set[str], known: set[str] | None, unknown: list[str]
) -> dict[str, Any]:
    """Children grouped by name in first-occurrence order: a repeat is always a list of dicts,
    any other name seen more than once is a list of its values, a single one is its value."""
    occurrences: dict[str, list[Any]] = {}
    for child in _child_elements(element):
        path = _path(prefix, _name(child))
        if known is not None and path not in known and path not in unknown:
            unknown.append(path)
        if _child_elements(child):
            value: Any = _values(child, path, repeats, known, unknown)
        else:
            value = _text(child)
        occurrences.setdefault(_name(child), []).append(value)
    out: dict[str, Any] = {}
    for name, found in occurrences.items():
        if _path(prefix, name) in repeats:
            out[name] = [value if isinstance(value, dict) else {} for value in found]
        else:
            out[name] = found[0] if len(found) == 1 else found
    return out


def _strip_indices(path: str) -> str:
    return "/".join(step.split("[")[0] for step in path.split("/"))


def _attachments(values: dict[str, Any], schema: FormSchema) -> tuple[str, ...]:
    binary = {f.path for f in schema.fields if f.bind_type == "binary"}
    names: list[str] = []
    for path, value in flatten_values(values).items():
        if _strip_indices(path) in binary and value.strip() and value.strip() not in names:
            names.append(value.strip())
    return tuple(names)


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "true()", "yes")


def _int(value: str | None) -> int | None:
    try:
        return int((value or "").strip())
    except ValueError:
        return None


def _entity_elements(element: etree._Element, prefix: str) -> list[tuple[etree._Element, etree._Element, str]]:
    """(entity, its meta, the meta's path) in document order; nothing inside an entity block is searched."""
    found = []
    for child in _child_elements(element):
        if _name(child) == "entity" and _name(element) == "meta":
            found.append((child, element, prefix))
        else:
            found.extend(_entity_elements(child, _path(prefix, _name(child))))
    return found


def _entities(root: etree._Element, schema: FormSchema | None) -> tuple[EntityChange, ...]:
    repeats = {f.path for f in schema.fields if f.kind == "repeat"} if schema is not None else set()
    changes = []
    for entity, meta, meta_path in _entity_elements(root, ""):
        scope_path = meta_path.rsplit("/", 1)[0] if "/" in meta_path else ""
        scope = scope_path if scope_path in repeats else None
        list_name = entity.get("dataset") or ""
        same_list = [d for d in schema.entities if d.list_name == list_name] if schema is not None else []
        scoped = [d for d in same_list if d.repeat == scope]
        declaration = scoped[0] if scoped else (same_list[0] if same_list else None)
        properties: dict[str, str] = {}
        context = meta.getparent()
        if declaration is not None and context is not None:
            for prop, field_path in declaration.properties.items():
                node: etree._Element | None = context
                relative = field_path[len(scope_path) + 1 :] if scope_path else field_path
                for step in relative.split("/"):
                    node = _first_child(node, step) if node is not None else None
                if node is not None:
                    properties[prop] = _text(node)
        label = _first_child(entity, "label")
        changes.append(
            EntityChange(
                list_name=list_name,
                entity_id=(entity.get("id") or "").strip(),
                create=_flag(entity.get("create")),
                update=_flag(entity.get("update")),
                label=_text(label) if label is not None else None,
                base_version=_int(entity.get("baseVersion")),
                trunk_version=_int(entity.get("trunkVersion")),
                branch_id=(entity.get("branchId") or "").strip() or None,
                properties=properties,
            )
        )
    return tuple(changes)


def _meta_text(root: etree._Element, name: str) -> str | None:
    meta = _first_child(root, "meta")
    node = _first_child(meta, name) if meta is not None else None
    return (_text(node).strip() or None) if node is not None else None


def _encrypted_files(root: etree._Element) -> tuple[str, ...]:
    names: list[str] = []
    for element in root.iter():
        if not _is_element(element):
            continue
        parent = element.getparent()
        in_media = _name(element) == "file" and parent is not None and _name(parent) == "media"
        name = _text(element).strip()
        if (_name(element) == "encryptedXmlFile" or in_media) and name and name not in names:
            names.append(name)
    return tuple(names)


def reference_parse(xml: bytes, schema: FormSchema | None) -> Expected:
    """What ``parse_submission(xml, schema, instance_id_fallback=FALLBACK_ID)`` should return."""
    root = parse_untrusted_xml(xml)
    instance_id = _meta_text(root, "instanceID") or (root.get("instanceID") or "").strip() or FALLBACK_ID
    encrypted = (root.get("encrypted") or "").strip().lower() in ("yes", "true") or any(
        _first_child(root, marker) is not None for marker in ("base64EncryptedKey", "encryptedXmlFile")
    )
    if encrypted:
        values = _values(root, "", set(), None, [])
        return Expected(
            values, (), _encrypted_files(root), (), instance_id, _meta_text(root, "deprecatedID"), None, True
        )
    repeats = {f.path for f in schema.fields if f.kind == "repeat"} if schema is not None else set()
    known = {f.path for f in schema.fields} if schema is not None else None
    unknown: list[str] = []
    values = _values(root, "", repeats, known, unknown)
    return Expected(
        values=values,
        unknown_paths=tuple(unknown),
        attachments=_attachments(values, schema) if schema is not None else (),
        entities=_entities(root, schema),
        instance_id=instance_id,
        deprecated_id=_meta_text(root, "deprecatedID"),
        instance_name=_meta_text(root, "instanceName"),
        encrypted=False,
    )


def assert_agrees(xml: bytes, schema: FormSchema | None) -> None:
    """``parse_submission`` returns what the reference reader expects, key order included."""
    record = parse_submission(xml, schema, instance_id_fallback=FALLBACK_ID)
    expected = reference_parse(xml, schema)
    # json.dumps keeps key order, which dict equality ignores: records are stored and exported in that order.
    assert json.dumps(record.values, ensure_ascii=False) == json.dumps(expected.values, ensure_ascii=False)
    assert record.unknown_paths == expected.unknown_paths
    assert record.attachments == expected.attachments
    assert record.entities == expected.entities
    assert (record.instance_id, record.deprecated_id, record.instance_name, record.encrypted) == (
        expected.instance_id,
        expected.deprecated_id,
        expected.instance_name,
        expected.encrypted,
    )


# ---------------------------------------------------------------------------------------------
# SR1: the corpus
# ---------------------------------------------------------------------------------------------


def _corpus_index() -> list[dict[str, Any]]:
    path = CORPUS / "index.json"
    entries: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    return entries


INDEX = _corpus_index()


def _submission_params() -> list[Any]:
    entries = [e for e in INDEX if e["kind"] == "submission"]
    if not entries:
        return [pytest.param(None, id="corpus-absent", marks=pytest.mark.skip(reason=f"no corpus index in {CORPUS}"))]
    return [pytest.param(e["file"], id=e["file"]) for e in entries]


def _form_for(submission_file: str) -> FormSchema | None:
    """The converting form of the same source whose id is the submission's root id, else the folder's form."""
    path = CORPUS / submission_file
    form_id = (parse_untrusted_xml(path.read_bytes()).get("id") or "").strip()
    source, folder = submission_file.split("/")[1], path.parent.name
    forms = [e for e in INDEX if e["kind"] == "form" and e["pyxform"] == "yes" and e["file"].split("/")[1] == source]
    forms = [e for e in forms if float(e.get("convert_s") or 0) < 3]  # the 20 s vendor survey is not needed here
    chosen = next((e for e in forms if e["id_string"] == form_id), None)
    chosen = chosen or next((e for e in forms if Path(e["file"]).stem == folder), None)
    if chosen is None:
        return None
    form_path = CORPUS / chosen["file"]
    return corpus_conversions.convert(form_path.read_bytes(), form_path.name, form_path.stem).schema


@pytest.mark.parametrize("submission_file", _submission_params())
def test_corpus_submissions_agree(submission_file: str) -> None:
    """SR1: every corpus submission, against its form (when one converts) and without a form."""
    xml = (CORPUS / submission_file).read_bytes()
    assert_agrees(xml, None)
    schema = _form_for(submission_file)
    if schema is None:
        pytest.skip(reason=f"no converting corpus form for {submission_file}")
    assert_agrees(xml, schema)


# ---------------------------------------------------------------------------------------------
# SR2/SR3: tricky and generated documents against forms with repeats, binary fields and entities
# ---------------------------------------------------------------------------------------------


def _field(path: str, kind: FieldKind = "question", bind_type: str = "string", repeat: str | None = None) -> Field:
    return Field(path=path, name=path.rsplit("/", 1)[-1], kind=kind, bind_type=bind_type, repeat=repeat)


NESTED = FormSchema(
    form_id="f",
    version="1",
    title="nested",
    fields=(
        _field("a"),
        _field("p", bind_type="binary"),
        _field("r", "repeat"),
        _field("r/a", repeat="r"),
        _field("r/p", bind_type="binary", repeat="r"),
        _field("r/r2", "repeat", repeat="r"),
        _field("r/r2/p", bind_type="binary", repeat="r/r2"),
        _field("g", "group"),
        _field("g/a"),
        _field("g/r2", "repeat"),
        _field("g/r2/p", bind_type="binary", repeat="g/r2"),
        _field("meta", "group"),
        _field("meta/instanceID"),
    ),
    entities=(
        EntityDeclaration(list_name="trees", properties={"height": "a", "where": "g/a"}),
        EntityDeclaration(list_name="trees", repeat="r", properties={"height": "r/a", "photo": "r/p"}),
        EntityDeclaration(list_name="plots", repeat="g/r2", properties={"photo": "g/r2/p"}),
    ),
)
FLAT = FormSchema(form_id="f", version="1", title="flat", fields=(_field("a"), _field("b"), _field("x")))
SCHEMAS = {"no-form": None, "nested": NESTED, "flat": FLAT}

META = b"<meta><instanceID>uuid:1</instanceID></meta>"
TRICKY: dict[str, bytes] = {
    "comment-inside-leaf": b"<a>1<!-- c -->2</a>",
    "leaf-with-only-a-comment": b"<a><!-- c --></a><b><!-- c --><?pi x?></b>",
    "pi-inside-leaf": b"<a><?pi x?>z</a>",
    "mixed-content": b"<g>lead<a>1</a>middle<!-- c -->tail</g>",
    "cdata-and-references": b"<a><![CDATA[c<d]]> &amp; caf&#233;</a>",
    "namespaced-tags": b'<o:a xmlns:o="http://o">1</o:a><g xmlns="http://g"><a>2</a></g>',
    "empty-elements": b"<a/><b></b><g><a/></g>",
    "whitespace-only": b"<a>  </a><g>\n  <a>1</a>\n</g>",
    "one-repeat-instance": b"<r><a>1</a><p>1.jpg</p></r>",
    "empty-repeat-instances": b"<r/><r></r><r><!-- c --></r><r> </r>",
    "nested-repeats": b"<r><r2><p>1.jpg</p></r2><r2/><r2><p>2.jpg</p></r2></r><r><r2><p>1.jpg</p></r2></r>",
    "repeat-after-other-names": b"<r><a>1</a></r><a>x</a><r><a>2</a></r>",
    "unknown-repeated-names": b"<x>1</x><y/><x><z>2</z></x><x/><y>3</y>",
    "attachments-blank-and-duplicate": b"<p> </p><r><p> 1.jpg </p></r><r><p>1.jpg</p></r><g><r2><p>3.jpg</p></r2></g>",
    "binary-field-with-children": b"<p><q>1.jpg</q></p>",
    "entity-top-level": (
        b'<a>7</a><g><a>here</a></g><meta><entity dataset="trees" id=" e-1 " create="1" update="no" '
        b'baseVersion="3" trunkVersion="x" branchId=" "><label>Big<!-- c --> oak</label></entity>'
        b"<instanceID>uuid:1</instanceID><instanceName> n </instanceName><deprecatedID>uuid:0</deprecatedID></meta>"
    ),
    "entities-in-repeats": (
        b'<r><a>1</a><p>1.jpg</p><meta><entity dataset="trees" id="e-2"/></meta></r>'
        b'<r><!-- c --><a>2</a><meta><entity dataset="trees" id="e-3" update="true()"/></meta></r>'
        b'<g><r2><p>9.jpg</p><meta><entity dataset="plots" id="e-4"/><entity dataset="trees" id="e-5"/></meta></r2></g>'
    ),
    "entity-not-under-meta": b'<g><entity dataset="trees" id="e-6"/></g>',
    "entity-inside-entity": (
        b'<meta><entity dataset="trees" id="outer"><meta><entity dataset="trees" id="inner"/></meta></entity>'
        b"<instanceID>uuid:1</instanceID></meta>"
    ),
    "namespaced-meta-and-entity": (
        b'<orx:meta xmlns:orx="http://openrosa.org/xforms"><orx:entity dataset="trees" id="e-7"/>'
        b"<orx:instanceID>uuid:ns</orx:instanceID></orx:meta>"
    ),
    "second-meta-ignored-for-header": (
        b"<meta><instanceID> </instanceID></meta><meta><instanceID>uuid:2</instanceID></meta>"
    ),
}
ROOTS = {
    "plain-root": b'<data id="f" version="1">',
    "default-xmlns-root": b'<data xmlns="http://opendatakit.org/submission" id="f" version="1">',
}
ENCRYPTED = (
    b'<data id="f" encrypted="yes" xmlns="http://www.opendatakit.org/xforms/encrypted">'
    b"<base64EncryptedKey>AAA=</base64EncryptedKey>"
    b'<orx:meta xmlns:orx="http://openrosa.org/xforms"><orx:instanceID>uuid:e</orx:instanceID></orx:meta>'
    b"<media><file>1.jpg.enc</file></media><media><file>1.jpg.enc</file><file> </file></media>"
    b"<encryptedXmlFile>submission.xml.enc</encryptedXmlFile></data>"
)


@pytest.mark.parametrize("schema_name", list(SCHEMAS), ids=list(SCHEMAS))
@pytest.mark.parametrize("root_name", list(ROOTS), ids=list(ROOTS))
@pytest.mark.parametrize("document", list(TRICKY), ids=list(TRICKY))
def test_tricky_documents_agree(document: str, root_name: str, schema_name: str) -> None:
    """SR2: hand-written edge cases, with and without meta, with and without a default namespace."""
    body = TRICKY[document]
    xml = ROOTS[root_name] + body + (b"" if b"<meta" in body else META) + b"</data>"
    assert_agrees(xml, SCHEMAS[schema_name])


@pytest.mark.parametrize("schema_name", list(SCHEMAS), ids=list(SCHEMAS))
def test_encrypted_envelope_agrees(schema_name: str) -> None:
    """SR2: an encrypted envelope is kept raw whatever the form."""
    assert_agrees(ENCRYPTED, SCHEMAS[schema_name])


NAMES = st.sampled_from(["a", "b", "p", "r", "r2", "g", "x", "meta", "entity", "label", "instanceID", "media", "file"])
PREFIXED = st.sampled_from([False, False, False, True])  # a namespace prefix on one element in four
TEXTS = st.sampled_from(["", "v", " 1.jpg ", "2.jpg", "\n  ", "&amp;", "caf&#233;", "<![CDATA[c<d]]>"])


def _element(name: str, prefixed: bool, children: list[str]) -> str:
    tag = f"o:{name}" if prefixed else name
    attributes = ' xmlns:o="http://o"' if prefixed else ""
    if name == "entity":
        attributes += ' dataset="trees" id="e" create="1"'
    return f"<{tag}{attributes}>{''.join(children)}</{tag}>" if children else f"<{tag}{attributes}/>"


NODES = st.recursive(
    st.one_of(
        TEXTS,
        st.just("<!-- c -->"),
        st.just("<?pi data?>"),
        st.builds(_element, NAMES, PREFIXED, st.just([])),
    ),
    lambda children: st.builds(_element, NAMES, PREFIXED, st.lists(children, max_size=5)),
    max_leaves=25,
)


@settings(max_examples=200, deadline=None)
@given(
    children=st.lists(NODES, max_size=6),
    root=st.sampled_from(list(ROOTS.values())),
    schema=st.sampled_from(list(SCHEMAS.values())),
)
def test_generated_documents_agree(children: list[str], root: bytes, schema: FormSchema | None) -> None:
    """SR3: random trees of repeats, groups, meta/entity blocks, comments, PIs, text and namespaces."""
    assert_agrees(root + "".join(children).encode() + b"</data>", schema)
