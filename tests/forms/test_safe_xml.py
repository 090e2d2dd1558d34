"""Hardened XML parsing of untrusted bytes.

Rules: SX1 entity declarations (billion laughs) are refused before the parser sees them;
SX2 external entities and external DTDs (XXE) are refused; SX3 nesting deeper than the limit is
refused; SX4 oversized documents are refused; SX5 UTF-16 surrogate-pair character references are
repaired into the real character; SX6 ordinary documents parse.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from forms.errors import XmlRejectedError
from forms.safe_xml import parse_untrusted_xml, repair_surrogate_references

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<data id="f"><a>&lol4;</a></data>"""

XXE_FILE = b"""<?xml version="1.0"?>
<!DOCTYPE data [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<data id="f"><a>&xxe;</a></data>"""

XXE_PARAMETER = b"""<?xml version="1.0"?>
<!DOCTYPE data [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/evil.dtd"> %remote;]>
<data id="f"/>"""

EXTERNAL_DTD = b"""<?xml version="1.0"?><!DOCTYPE data SYSTEM "http://127.0.0.1:9/x.dtd"><data id="f"/>"""

LOWERCASE_DOCTYPE = b"""<?xml version="1.0"?><!doctype data><data id="f"/>"""


@pytest.mark.parametrize(
    "payload",
    [BILLION_LAUGHS, XXE_FILE, XXE_PARAMETER, EXTERNAL_DTD, LOWERCASE_DOCTYPE],
    ids=["billion-laughs", "xxe-file", "xxe-parameter-entity", "external-dtd", "lowercase-doctype"],
)
def test_declarations_are_refused(payload: bytes) -> None:
    """SX1/SX2: any DOCTYPE or ENTITY declaration is refused with xml_unsafe."""
    with pytest.raises(XmlRejectedError) as info:
        parse_untrusted_xml(payload)
    assert info.value.code == "xml_unsafe"


def test_utf16_doctype_is_refused() -> None:
    """SX1: a UTF-16 document cannot hide its DOCTYPE between NUL bytes."""
    payload = BILLION_LAUGHS.replace(b'<?xml version="1.0"?>', b"").decode().encode("utf-16")
    with pytest.raises(XmlRejectedError) as info:
        parse_untrusted_xml(payload)
    assert info.value.code == "xml_unsafe"


def test_undeclared_entity_reference_is_malformed_not_expanded() -> None:
    """SX2: an entity reference without a declaration is a well-formedness error."""
    with pytest.raises(XmlRejectedError) as info:
        parse_untrusted_xml(b'<data id="f"><a>&xxe;</a></data>')
    assert info.value.code == "xml_malformed"


@pytest.mark.parametrize("depth", [65, 300], ids=["over-our-limit", "over-libxml2-limit"])
def test_deep_nesting_is_refused(depth: int) -> None:
    """SX3: deep nesting is refused with xml_too_deep."""
    payload = b"<a>" * depth + b"</a>" * depth
    with pytest.raises(XmlRejectedError) as info:
        parse_untrusted_xml(payload)
    assert info.value.code == "xml_too_deep"


def test_nesting_at_the_limit_parses() -> None:
    """SX3: exactly max_depth levels is fine."""
    payload = b"<a>" * 64 + b"</a>" * 64
    assert parse_untrusted_xml(payload).tag == "a"


@pytest.mark.parametrize(
    ("innermost", "refused"),
    [
        (b"<b/>", True),
        (b"<!-- c -->", True),
        (b"<?pi data?>", True),
        (b"text", False),
        (b"<![CDATA[x]]>", False),
        (b"", False),
    ],
    ids=["element", "comment", "processing-instruction", "text", "cdata", "nothing"],
)
def test_depth_counts_comments_and_processing_instructions(innermost: bytes, refused: bool) -> None:
    """SX3: below 64 nested elements, an element, comment or PI is one level too deep; text is not a level."""
    payload = b"<a>" * 64 + innermost + b"</a>" * 64
    if refused:
        with pytest.raises(XmlRejectedError) as info:
            parse_untrusted_xml(payload)
        assert info.value.code == "xml_too_deep"
    else:
        assert parse_untrusted_xml(payload).tag == "a"


def test_depth_ignores_nodes_beside_the_root() -> None:
    """SX3: comments and PIs before or after the document element are not below it."""
    payload = b"<!-- lead --><?pi x?>" + b"<a>" * 64 + b"</a>" * 64 + b"<!-- trail -->"
    assert parse_untrusted_xml(payload).tag == "a"


def test_depth_limit_is_a_parameter() -> None:
    """SX3: the limit is the caller's (each limit gets its own check)."""
    payload = b"<a><b><c/></b></a>"
    assert parse_untrusted_xml(payload, max_depth=3).tag == "a"
    for too_small in (2, 0):
        with pytest.raises(XmlRejectedError) as info:
            parse_untrusted_xml(payload, max_depth=too_small)
        assert info.value.code == "xml_too_deep"


def test_parsing_in_threads_keeps_documents_apart() -> None:
    """SX6: the reused per-thread parser gives each thread its own documents, errors included."""

    def work(worker: int) -> list[str]:
        seen = []
        for i in range(200):
            if i % 7 == 0:
                with pytest.raises(XmlRejectedError):
                    parse_untrusted_xml(b"<a><b></a>")
            seen.append(parse_untrusted_xml(b"<a><b>%d-%d</b></a>" % (worker, i))[0].text or "")
        return seen

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(work, range(8)))
    assert results == [[f"{worker}-{i}" for i in range(200)] for worker in range(8)]


def test_oversized_document_is_refused() -> None:
    """SX4: documents over max_bytes are refused before parsing."""
    with pytest.raises(XmlRejectedError) as info:
        parse_untrusted_xml(b"<a>" + b"x" * 100 + b"</a>", max_bytes=50)
    assert info.value.code == "xml_too_large"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"<a>&#55357;&#56490;&#55357;&#56842;</a>", "💪😊"),
        (b"<a>&#xD83D;&#xDCAA;</a>", "💪"),
        (b"<a>caf&#233; &#55357;&#56490;!</a>", "café 💪!"),
    ],
    ids=["decimal-pairs", "hex-pair", "mixed-with-ordinary-refs"],
)
def test_surrogate_pairs_are_repaired(raw: bytes, expected: str) -> None:
    """SX5: surrogate-pair references become the combined character."""
    assert parse_untrusted_xml(raw).text == expected


def test_lone_surrogate_is_left_alone_and_rejected() -> None:
    """SX5: an unpaired surrogate is not invented into a character; the XML stays invalid."""
    assert repair_surrogate_references(b"&#55357;x") == b"&#55357;x"
    with pytest.raises(XmlRejectedError) as info:
        parse_untrusted_xml(b"<a>&#55357;x</a>")
    assert info.value.code == "xml_malformed"


@pytest.mark.parametrize(
    "payload",
    [b"", b"not xml", b"<a><b></a>"],
    ids=["empty", "text", "mismatched-tags"],
)
def test_malformed_documents(payload: bytes) -> None:
    """SX6: non-XML input is reported as xml_malformed."""
    with pytest.raises(XmlRejectedError) as info:
        parse_untrusted_xml(payload)
    assert info.value.code == "xml_malformed"


def test_ordinary_document_parses_with_namespaces() -> None:
    """SX6: a normal submission with a default namespace parses."""
    root = parse_untrusted_xml(b'<?xml version="1.0"?><data xmlns="http://x" id="f"><a>1</a></data>')
    assert root.get("id") == "f"
    assert [child.text for child in root] == ["1"]
