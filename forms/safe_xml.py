"""The one way ``forms`` parses untrusted XML (uploaded XForms, submissions from devices).

Defences, in order: a size cap; a byte-level refusal of any DOCTYPE/ENTITY declaration, so entity
expansion (billion laughs) and external entities (XXE) never reach the parser; repair of UTF-16
surrogate-pair character references that old Collect versions wrote for emoji; an lxml parser
that resolves no entities, loads no DTD, never touches the network and keeps libxml2's size limits
(``huge_tree=False``); a depth cap checked on the parsed tree.
"""

from __future__ import annotations

import re
import threading

from lxml import etree

from forms.errors import XmlRejectedError

MAX_XML_BYTES = 10 * 1024 * 1024
MAX_XML_DEPTH = 64

# Matches "&#55357;&#56490;" and "&#xD83D;&#xDCAA;" style pairs (decimal or hex, either case).
_CHAR_REF = rb"&#(?:([0-9]{5})|[xX]([0-9a-fA-F]{4}));"
_SURROGATE_PAIR_RE = re.compile(_CHAR_REF + _CHAR_REF)
_DECLARATION_RE = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


def _code_point(decimal: bytes | None, hexadecimal: bytes | None) -> int:
    return int(decimal) if decimal else int(hexadecimal or b"0", 16)


def _combine_pair(match: re.Match[bytes]) -> bytes:
    high = _code_point(match.group(1), match.group(2))
    low = _code_point(match.group(3), match.group(4))
    if 0xD800 <= high <= 0xDBFF and 0xDC00 <= low <= 0xDFFF:
        combined = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
        # A character reference is valid whatever the document's declared encoding.
        return b"&#%d;" % combined
    return match.group(0)


def repair_surrogate_references(data: bytes) -> bytes:
    """Replace UTF-16 surrogate-pair character references with the combined code point's reference."""
    if b"&#" not in data:
        return data
    return _SURROGATE_PAIR_RE.sub(_combine_pair, data)


def _as_text_for_scan(data: bytes) -> bytes:
    # UTF-16/32 documents hide "<!DOCTYPE" between NUL bytes; scan them as UTF-8 instead.
    if data[:2] in (b"\xff\xfe", b"\xfe\xff") or (len(data) > 1 and b"\x00" in data[:4]):
        for encoding in ("utf-16", "utf-32"):
            try:
                return data.decode(encoding).encode("utf-8")
            except UnicodeDecodeError:
                continue
    return data


class _PerThread(threading.local):
    """One parser and the compiled depth checks for the current thread.

    lxml parsers must not be shared between threads, and building one per call costs a few
    microseconds on every submission; XPath evaluators are per thread for the same reason.
    """

    def __init__(self) -> None:
        self.parser = etree.XMLParser(
            resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False
        )
        self.depth_checks: dict[int, etree.XPath] = {}


_per_thread = _PerThread()


def _depth_exceeds(root: etree._Element, max_depth: int) -> bool:
    # Depth counts the root as 1 and every node a tree walk yields (elements, comments, processing
    # instructions; text is not a node there). Evaluated in libxml2: a Python walk over every node
    # cost more than the parse itself. Only the document element is a step target, so comments
    # beside the root do not count, as in a walk from the root.
    if max_depth < 1:
        return True  # the root alone is one level
    check = _per_thread.depth_checks.get(max_depth)
    if check is None:
        steps = "/".join(["*"] * max_depth)
        check = etree.XPath(f"boolean(/{steps}[* or comment() or processing-instruction()])")
        _per_thread.depth_checks[max_depth] = check
    return bool(check(root))


def parse_untrusted_xml(
    data: bytes, *, max_bytes: int = MAX_XML_BYTES, max_depth: int = MAX_XML_DEPTH
) -> etree._Element:
    """Parse untrusted XML bytes into an lxml root element, or raise ``XmlRejectedError``."""
    if len(data) > max_bytes:
        raise XmlRejectedError("xml_too_large", f"XML is {len(data)} bytes, the limit is {max_bytes}.")
    if _DECLARATION_RE.search(_as_text_for_scan(data)):
        raise XmlRejectedError("xml_unsafe", "XML with a DOCTYPE or ENTITY declaration is not accepted.")
    repaired = repair_surrogate_references(data)
    try:
        root = etree.fromstring(repaired, parser=_per_thread.parser)
    except etree.XMLSyntaxError as exc:
        if "depth" in str(exc).lower() or "nesting" in str(exc).lower():
            raise XmlRejectedError("xml_too_deep", f"XML is nested too deeply: {exc}") from exc
        raise XmlRejectedError("xml_malformed", f"XML is not well-formed: {exc}") from exc
    except ValueError as exc:  # e.g. a str with an encoding declaration, or an empty document
        raise XmlRejectedError("xml_malformed", f"XML is not well-formed: {exc}") from exc
    if root is None:
        raise XmlRejectedError("xml_malformed", "XML document is empty.")
    docinfo: etree.DocInfo = root.getroottree().docinfo
    if docinfo.internalDTD is not None or docinfo.externalDTD is not None or docinfo.system_url:
        raise XmlRejectedError("xml_unsafe", "XML with a DOCTYPE declaration is not accepted.")
    if _depth_exceeds(root, max_depth):
        raise XmlRejectedError("xml_too_deep", f"XML is nested deeper than {max_depth} elements.")
    return root
