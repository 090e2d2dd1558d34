"""XForm XML → ``FormSchema``: the primary instance, binds, itext, body controls and secondary instances.

The XForm (ODK XForms spec) is the stable contract between pyxform and us, so the schema is read from
it and never from pyxform's private structures (docs/reference/xlsform.md §1.3). Element names are
matched by local name, so older XForms that prefix instance nodes (``orx:meta``) read the same way.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from lxml import etree

from forms.errors import FormError, XmlRejectedError
from forms.safe_xml import parse_untrusted_xml
from forms.schema import Choice, ChoiceList, EntityDeclaration, Field, FieldKind, FormSchema, MediaRef

ENTITIES_NS = "http://www.opendatakit.org/xforms/entities"
JR_NS = "http://openrosa.org/javarosa"
ODK_NS = "http://www.opendatakit.org/xforms"

# XForms are bigger and nest deeper than submissions (body groups inside repeats inside groups).
MAX_XFORM_BYTES = 50 * 1024 * 1024
MAX_XFORM_DEPTH = 200

ITEMSETS_FILE = "itemsets.csv"

_LANG_CODE_RE = re.compile(r"\(\s*([A-Za-z]{2,3}(?:[-_][A-Za-z0-9]+)*)\s*\)\s*$")
_INSTANCE_REF_RE = re.compile(r"""instance\(\s*['"]([^'"]+)['"]\s*\)""")
_ITEXT_REF_RE = re.compile(r"""jr:itext\(\s*['"]([^'"]+)['"]\s*\)""")
_MEDIA_PREFIXES: tuple[tuple[str, Literal["image", "audio", "video", "other"]], ...] = (
    ("jr://images/", "image"),
    ("jr://image/", "image"),
    ("jr://audio/", "audio"),
    ("jr://video/", "video"),
    ("jr://file/", "other"),
)
_UPLOAD_CONTROLS = {"image": "image", "audio": "audio", "video": "video", "osm": "osm"}


def _local(element: etree._Element) -> str:
    tag = element.tag
    if not isinstance(tag, str):  # comments and processing instructions
        return ""
    return etree.QName(tag).localname


def _children(element: etree._Element, name: str | None = None) -> Iterator[etree._Element]:
    for child in element:
        local = _local(child)
        if local and (name is None or local == name):
            yield child


def _first(element: etree._Element, name: str) -> etree._Element | None:
    return next(_children(element, name), None)


def _attr(element: etree._Element, name: str, namespace: str | None = None) -> str | None:
    if namespace is not None:
        value = element.get(f"{{{namespace}}}{name}")
        if value is not None:
            return value
    value = element.get(name)
    if value is not None:
        return value
    # Older XForms write namespaced attributes with an unexpected prefix; match by local name.
    for key, val in element.attrib.items():
        key_s = key if isinstance(key, str) else key.decode()
        if key_s.endswith("}" + name):
            return val if isinstance(val, str) else val.decode()
    return None


def _parent_is_meta(element: etree._Element) -> bool:
    parent = element.getparent()
    return parent is not None and _local(parent) == "meta"


def _all_text(element: etree._Element) -> str:
    return "".join(t if isinstance(t, str) else t.decode() for t in element.itertext())


def _strip_prefix(step: str) -> str:
    # "orx:meta" -> "meta"; "@id" stays "@id".
    return step.split(":", 1)[1] if ":" in step and not step.startswith("@") else step


def language_key(lang: str) -> str:
    """Return the key labels use for an itext language: the code in "Français (fr)", else the name."""
    if lang == "default":
        return ""
    found = _LANG_CODE_RE.search(lang)
    return found.group(1) if found else lang


@dataclass
class _Itext:
    """itext texts: id -> {form ("" for the label text, "image", "audio" ...) -> {language key -> text}}."""

    texts: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    languages: list[str] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    default: str | None = None
    media: list[MediaRef] = field(default_factory=list)

    def labels(self, text_id: str, form: str = "") -> dict[str, str]:
        return dict(self.texts.get(text_id, {}).get(form, {}))


def _value_text(value: etree._Element) -> str:
    # Labels may embed <output value="..."/>; render them as ${...} so the text stays readable.
    parts: list[str] = [value.text or ""]
    for child in value:
        if _local(child) == "output":
            expr = (child.get("value") or "").strip()
            parts.append("${" + expr + "}")
        elif _local(child):
            parts.append(_all_text(child))
        parts.append(child.tail or "")
    return "".join(parts)


def _media_ref(uri: str) -> MediaRef | None:
    uri = uri.strip()
    for prefix, kind in _MEDIA_PREFIXES:
        if uri.startswith(prefix):
            name = uri[len(prefix) :]
            if name:
                return MediaRef(file_name=name, kind=kind)
    return None


def _parse_itext(model: etree._Element) -> _Itext:
    itext = _Itext()
    node = _first(model, "itext")
    if node is None:
        return itext
    for translation in _children(node, "translation"):
        lang = translation.get("lang") or "default"
        key = language_key(lang)
        if key not in itext.names:
            itext.names[key] = lang
            if key:
                itext.languages.append(key)
        if (translation.get("default") or "").strip() in ("true()", "true") and key:
            itext.default = key
        for text in _children(translation, "text"):
            text_id = text.get("id") or ""
            forms = itext.texts.setdefault(text_id, {})
            for value in _children(text, "value"):
                form = value.get("form") or ""
                content = _value_text(value)
                forms.setdefault(form, {})[key] = content
                if form and form != "guidance":
                    ref = _media_ref(content)
                    if ref is not None and ref not in itext.media:
                        itext.media.append(ref)
    return itext


def _text_of(element: etree._Element | None, itext: _Itext) -> dict[str, str]:
    """Labels of a <label>/<hint>: from itext when it has ref="jr:itext(...)", else its inline text."""
    if element is None:
        return {}
    ref = element.get("ref") or ""
    found = _ITEXT_REF_RE.search(ref)
    if found:
        return itext.labels(found.group(1))
    text = _value_text(element).strip()
    return {"": text} if text else {}


@dataclass
class _Node:
    """A mutable field under construction."""

    path: str
    name: str
    kind: FieldKind = "question"
    bind_type: str = "string"
    control: str = "calculate"
    labels: dict[str, str] = field(default_factory=dict)
    hints: dict[str, str] = field(default_factory=dict)
    required: str | None = None
    relevant: str | None = None
    constraint: str | None = None
    calculate: str | None = None
    readonly: str | None = None
    choice_list: str | None = None
    choice_filter: str | None = None
    media_type: str | None = None
    save_to: str | None = None
    preload: str | None = None
    has_children: bool = False


class _Builder:
    def __init__(self, root_name: str) -> None:
        self.root_name = root_name
        self.nodes: dict[str, _Node] = {}
        self.repeats: set[str] = set()
        self.choice_lists: dict[str, ChoiceList] = {}
        self.media: list[MediaRef] = []

    def node(self, path: str) -> _Node:
        existing = self.nodes.get(path)
        if existing is None:
            # A bind or control for a node the instance lacks: still give it a Field, parents first.
            parent = path.rsplit("/", 1)[0] if "/" in path else ""
            if parent:
                self.node(parent).has_children = True
            existing = _Node(path=path, name=path.rsplit("/", 1)[-1])
            self.nodes[path] = existing
        return existing

    def add_media(self, ref: MediaRef) -> None:
        # One manifest entry per file name: the first (most specific) kind seen wins.
        if all(m.file_name != ref.file_name for m in self.media):
            self.media.append(ref)

    def to_path(self, ref: str, context: str = "") -> str | None:
        """Turn an absolute ("/data/a/b") or context-relative ("b") reference into a path below the root."""
        ref = ref.strip()
        if not ref:
            return None
        if ref.startswith("/"):
            steps = [_strip_prefix(s) for s in ref.strip("/").split("/")]
            if not steps or steps[0] != self.root_name:
                return None
            steps = steps[1:]
        else:
            steps = [s for s in (context.split("/") if context else [])]
            for step in ref.split("/"):
                if step in ("", "."):
                    continue
                if step == "..":
                    if steps:
                        steps.pop()
                    continue
                steps.append(_strip_prefix(step))
        return "/".join(steps) or None


def _walk_instance(builder: _Builder, element: etree._Element, prefix: str) -> None:
    seen: set[str] = set()
    for child in _children(element):
        name = _local(child)
        path = f"{prefix}/{name}" if prefix else name
        if _attr(child, "template", JR_NS) is not None:
            builder.repeats.add(path)
        if name in seen:
            continue  # the jr:template copy and the first real instance describe one node
        seen.add(name)
        node = builder.node(path)
        if len(child):
            has_elements = any(_local(c) for c in child)
            if has_elements:
                node.has_children = True
                node.kind = "group"
                node.control = "group"
                _walk_instance(builder, child, path)


def _apply_bind(builder: _Builder, bind: etree._Element) -> None:
    path = builder.to_path(bind.get("nodeset") or "")
    if path is None:
        return
    node = builder.node(path)
    bind_type = bind.get("type")
    if bind_type:
        node.bind_type = bind_type.removeprefix("xsd:")
    node.required = bind.get("required", node.required)
    node.relevant = bind.get("relevant", node.relevant)
    node.constraint = bind.get("constraint", node.constraint)
    node.calculate = bind.get("calculate", node.calculate)
    node.readonly = bind.get("readonly", node.readonly)
    save_to = _attr(bind, "saveto", ENTITIES_NS)
    if save_to:
        node.save_to = save_to
    preload = _attr(bind, "preload", JR_NS)
    if preload:
        node.preload = preload
        if not node.has_children:
            node.control = "metadata"


def _choice_list_name(nodeset: str) -> tuple[str | None, str | None]:
    """Return (instance id, predicate) of an itemset nodeset like instance('x')/root/item[a = b]."""
    found = _INSTANCE_REF_RE.search(nodeset)
    if not found:
        return None, None
    rest = nodeset[found.end() :]
    predicate: str | None = None
    start = rest.find("[")
    if start >= 0 and rest.rstrip().endswith("]"):
        predicate = rest[start + 1 : rest.rstrip().rfind("]")].strip() or None
    return found.group(1), predicate


def _upload_control(mediatype: str | None) -> str:
    major = (mediatype or "").split("/", 1)[0].lower()
    return _UPLOAD_CONTROLS.get(major, "file")


def _read_inline_items(builder: _Builder, control: etree._Element, path: str, itext: _Itext) -> str | None:
    """Old-style <item><label/><value/></item> selects: an inline list named after the field path."""
    choices: list[Choice] = []
    for item in _children(control, "item"):
        value = _first(item, "value")
        choices.append(
            Choice(
                name=(value.text or "").strip() if value is not None else "",
                labels=_text_of(_first(item, "label"), itext),
            )
        )
    if not choices:
        return None
    builder.choice_lists.setdefault(path, ChoiceList(name=path, choices=tuple(choices)))
    return path


def _walk_body(builder: _Builder, element: etree._Element, context: str, itext: _Itext) -> None:
    for child in _children(element):
        name = _local(child)
        if name in ("label", "hint", "item", "itemset", "setvalue", "setgeopoint", "action"):
            continue
        if name == "repeat":
            path = builder.to_path(child.get("nodeset") or child.get("ref") or "", context)
            if path:
                builder.repeats.add(path)
                node = builder.node(path)
                node.kind = "repeat"
                node.control = "repeat"
                if not node.labels:
                    node.labels = _text_of(_first(child, "label"), itext)
            _walk_body(builder, child, path or context, itext)
            continue
        ref = child.get("ref") or child.get("bind") or ""
        path = builder.to_path(ref, context) if ref else None
        if name == "group":
            if path:
                node = builder.node(path)
                if node.kind != "repeat":
                    node.kind = "group"
                    node.control = "group"
                node.labels = node.labels or _text_of(_first(child, "label"), itext)
            _walk_body(builder, child, path or context, itext)
            continue
        if path is None:
            continue
        node = builder.node(path)
        node.labels = _text_of(_first(child, "label"), itext)
        node.hints = _text_of(_first(child, "hint"), itext)
        if name in ("select1", "select", "rank"):
            node.control = {"select1": "select_one", "select": "select_multiple", "rank": "rank"}[name]
            itemset = _first(child, "itemset")
            if itemset is not None:
                node.choice_list, node.choice_filter = _choice_list_name(itemset.get("nodeset") or "")
            else:
                node.choice_list = _read_inline_items(builder, child, path, itext)
        elif name == "upload":
            node.media_type = child.get("mediatype")
            node.control = _upload_control(node.media_type)
        elif name == "input":
            query = child.get("query")
            if query:
                # select_one_external: Collect reads the list from itemsets.csv (no instance declared).
                node.control = "select_one"
                node.choice_list, node.choice_filter = _choice_list_name(query)
                if node.choice_list:
                    builder.choice_lists.setdefault(
                        node.choice_list,
                        ChoiceList(name=node.choice_list, source="itemsets", file_name=ITEMSETS_FILE),
                    )
                builder.add_media(MediaRef(file_name=ITEMSETS_FILE, kind="itemsets"))
            elif (node.readonly or "").strip() in ("true()", "true") and not node.calculate:
                node.control = "note"
            else:
                node.control = "input"
        elif name in ("trigger", "range", "secret"):
            node.control = "input" if name == "secret" else name
        else:
            node.control = name


def _file_media_kind(file_name: str) -> Literal["csv", "xml", "geojson", "other"]:
    lower = file_name.lower()
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith(".geojson"):
        return "geojson"
    if lower.endswith(".xml"):
        return "xml"
    return "other"


def _read_secondary_instance(
    builder: _Builder, instance: etree._Element, itext: _Itext, entity_lists: set[str]
) -> None:
    list_id = instance.get("id") or ""
    src = (instance.get("src") or "").strip()
    if src:
        if not src.startswith(("jr://file-csv/", "jr://file/")):
            return  # jr://instance/last-saved and the like are not files the server serves
        file_name = src.split("/", 3)[-1] if src.count("/") >= 3 else src.rsplit("/", 1)[-1]
        kind = _file_media_kind(file_name)
        is_entity_list = list_id in entity_lists and file_name == f"{list_id}.csv"
        builder.add_media(MediaRef(file_name=file_name, kind="entity_list" if is_entity_list else kind))
        builder.choice_lists.setdefault(list_id, ChoiceList(name=list_id, source="file", file_name=file_name))
        return
    root = next(_children(instance), None)
    if root is None:
        return
    choices: list[Choice] = []
    for item in _children(root, "item"):
        name = ""
        labels: dict[str, str] = {}
        extra: dict[str, str] = {}
        for column in _children(item):
            column_name = _local(column)
            text = _all_text(column)
            if column_name == "name":
                name = text
            elif column_name == "itextId":
                labels = itext.labels(text)
                for form, media_labels in itext.texts.get(text, {}).items():
                    if form:
                        extra.update(
                            {
                                f"media::{form}::{lang}" if lang else f"media::{form}": v
                                for lang, v in media_labels.items()
                            }
                        )
            elif column_name == "label":
                labels = {"": text}
            else:
                extra[column_name] = text
        choices.append(Choice(name=name, labels=labels, extra=extra))
    builder.choice_lists[list_id] = ChoiceList(name=list_id, choices=tuple(choices))


def _itemsets_choices(itemsets_csv: bytes | None) -> dict[str, list[Choice]]:
    if not itemsets_csv:
        return {}
    lists: dict[str, list[Choice]] = {}
    reader = csv.DictReader(io.StringIO(itemsets_csv.decode("utf-8-sig")))
    for row in reader:
        list_name = row.pop("list_name", "") or ""
        name = row.pop("name", "") or ""
        labels: dict[str, str] = {}
        extra: dict[str, str] = {}
        for column, value in row.items():
            if column is None:
                continue
            if column == "label":
                labels[""] = value or ""
            elif column.startswith("label::"):
                labels[language_key(column[len("label::") :])] = value or ""
            else:
                extra[column] = value or ""
        lists.setdefault(list_name, []).append(Choice(name=name, labels=labels, extra=extra))
    return lists


def _innermost_repeat(path: str, repeats: set[str]) -> str | None:
    best: str | None = None
    for repeat in repeats:
        if path.startswith(repeat + "/") and (best is None or len(repeat) > len(best)):
            best = repeat
    return best


def _entity_declarations(
    builder: _Builder, instance_root: etree._Element, fields: Mapping[str, Field]
) -> tuple[EntityDeclaration, ...]:
    declarations: list[tuple[str, EntityDeclaration]] = []

    def find(element: etree._Element, prefix: str) -> None:
        for child in _children(element):
            name = _local(child)
            path = f"{prefix}/{name}" if prefix else name
            if name == "entity" and _local(element) == "meta":
                declarations.append((path, _declaration(child, path)))
            elif len(child):
                find(child, path)

    def bound(path: str, attribute: str) -> str | None:
        f = fields.get(f"{path}/{attribute}")
        return f.calculate if f is not None else None

    def _declaration(entity: etree._Element, path: str) -> EntityDeclaration:
        def condition(attribute: str) -> str | None:
            calculated = bound(path, "@" + attribute)
            if calculated is not None:
                return calculated
            static = entity.get(attribute)
            return static if static else None

        return EntityDeclaration(
            list_name=entity.get("dataset") or "",
            create=condition("create"),
            update=condition("update"),
            entity_id=bound(path, "@id"),
            label=bound(path, "label"),
            repeat=_innermost_repeat(path, builder.repeats),
        )

    find(instance_root, "")
    if not declarations:
        return ()
    properties: dict[int, dict[str, str]] = {i: {} for i in range(len(declarations))}
    for f in fields.values():
        if not f.save_to:
            continue
        target, prop = f.save_to.split("#", 1) if "#" in f.save_to else (None, f.save_to)
        candidates = [
            i
            for i, (_, d) in enumerate(declarations)
            if (target is None or d.list_name == target) and (target is not None or d.repeat == f.repeat)
        ]
        if not candidates:
            candidates = [i for i, (_, d) in enumerate(declarations) if target is None or d.list_name == target]
        if candidates:
            properties[candidates[0]][prop] = f.path
    return tuple(replace(d, properties=properties[i]) for i, (_, d) in enumerate(declarations))


def _to_field(node: _Node, repeats: set[str]) -> Field:
    kind: FieldKind = "repeat" if node.path in repeats else node.kind
    if node.has_children and kind == "question":
        kind = "group"
    control = node.control
    if kind == "repeat":
        control = "repeat"
    elif kind == "group":
        control = "group"
    return Field(
        path=node.path,
        name=node.name,
        kind=kind,
        bind_type=node.bind_type,
        control=control,
        labels=node.labels,
        hints=node.hints,
        required=node.required,
        relevant=node.relevant,
        constraint=node.constraint,
        calculate=node.calculate,
        readonly=node.readonly,
        choice_list=node.choice_list,
        choice_filter=node.choice_filter,
        repeat=_innermost_repeat(node.path, repeats),
        media_type=node.media_type,
        save_to=node.save_to,
    )


def parse_xform(xform: bytes, itemsets_csv: bytes | None = None) -> FormSchema:
    """Parse an XForm into a ``FormSchema``; ``itemsets_csv`` fills select_one_external lists."""
    try:
        html = parse_untrusted_xml(xform, max_bytes=MAX_XFORM_BYTES, max_depth=MAX_XFORM_DEPTH)
    except XmlRejectedError as exc:
        code = "xform_unsafe" if exc.code == "xml_unsafe" else "xform_invalid"
        raise FormError(code, exc.message, {"xml_code": exc.code}) from exc
    head = _first(html, "head")
    model = _first(head, "model") if head is not None else None
    if head is None or model is None:
        raise FormError("xform_invalid", "The XML is not an XForm: no h:head/model element.")
    instances = list(_children(model, "instance"))
    primary = next((i for i in instances if i.get("id") is None), instances[0] if instances else None)
    instance_root = next(_children(primary), None) if primary is not None else None
    if primary is None or instance_root is None:
        raise FormError("xform_invalid", "The XForm has no primary instance.")
    form_id = (instance_root.get("id") or "").strip()
    if not form_id:
        raise FormError(
            "missing_form_id",
            "The XForm's primary instance has no id attribute; add settings/form_id to the XLSForm.",
        )
    title_element = _first(head, "title")
    title = _all_text(title_element).strip() if title_element is not None else ""

    builder = _Builder(_local(instance_root))
    itext = _parse_itext(model)
    _walk_instance(builder, instance_root, "")
    for bind in _children(model, "bind"):
        _apply_bind(builder, bind)
    body = _first(html, "body")
    if body is not None:
        _walk_body(builder, body, "", itext)

    entity_lists = {
        e.get("dataset") or "" for e in instance_root.iter() if _local(e) == "entity" and _parent_is_meta(e)
    }
    for instance in instances:
        if instance is not primary:
            _read_secondary_instance(builder, instance, itext, entity_lists)
    for list_name, choices in _itemsets_choices(itemsets_csv).items():
        existing = builder.choice_lists.get(list_name)
        if existing is None or existing.source == "itemsets":
            builder.choice_lists[list_name] = ChoiceList(
                name=list_name, choices=tuple(choices), source="itemsets", file_name=ITEMSETS_FILE
            )
    for ref in itext.media:
        builder.add_media(ref)

    fields = tuple(_to_field(node, builder.repeats) for node in builder.nodes.values())
    by_path = {f.path: f for f in fields}
    entities = _entity_declarations(builder, instance_root, by_path)
    for declaration in entities:
        # Updates read instance('<list>')/root/item/__version: devices need the list as <list>.csv.
        if declaration.update is not None:
            builder.add_media(MediaRef(file_name=f"{declaration.list_name}.csv", kind="entity_list"))
    instance_name_field = by_path.get("meta/instanceName")
    submission = _first(model, "submission")
    encrypted = submission is not None and bool(submission.get("base64RsaPublicKey"))
    return FormSchema(
        form_id=form_id,
        version=(instance_root.get("version") or "").strip(),
        title=title,
        root_name=builder.root_name,
        languages=tuple(itext.languages),
        default_language=itext.default,
        fields=fields,
        choice_lists=dict(builder.choice_lists),
        media=tuple(builder.media),
        entities=entities,
        encrypted=encrypted,
        instance_name=instance_name_field.calculate if instance_name_field is not None else None,
        language_names=dict(itext.names),
    )
