"""A submission rewritten as an edit (a reviewer keeps a refused XML as a new version of its chain).

Rules: SR-1 the rewritten XML names the new instance id and deprecates the given one, whatever meta held
before (none, an instanceID only, an older deprecatedID); SR-2 every other node and the form's identity
are unchanged; SR-3 an encrypted submission is refused with a SubmissionError.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from forms.errors import SubmissionError
from forms.submission import read_submission_header, rewrite_as_edit

NS = "http://opendatakit.org/submissions"
BEFORE = {
    "no meta": f'<data xmlns="{NS}" id="coop" version="3"><site>Tiznit</site></data>',
    "instanceID only": (
        f'<data xmlns="{NS}" id="coop" version="3"><site>Tiznit</site>'
        "<meta><instanceID>uuid:a</instanceID></meta></data>"
    ),
    "older edit": (
        '<?xml version="1.0"?><data id="coop" version="3"><site>Tiznit</site>'
        "<meta><instanceID>uuid:b</instanceID><deprecatedID>uuid:0</deprecatedID><instanceName>x</instanceName>"
        "</meta></data>"
    ),
}
ids = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), min_size=1, max_size=40).map(
    lambda s: "uuid:" + s.strip()
)


def _others(xml: bytes) -> list[tuple[str, str | None]]:
    root = etree.fromstring(xml)
    return [
        (etree.QName(e).localname, e.text)
        for e in root.iter()
        if etree.QName(e).localname not in ("instanceID", "deprecatedID")
    ]


@pytest.mark.parametrize("xml", list(BEFORE.values()), ids=list(BEFORE))
@given(new=ids, old=ids)
def test_the_edit_names_its_ids_and_keeps_everything_else(xml: str, new: str, old: str) -> None:
    original = xml.encode()
    edit = rewrite_as_edit(original, new, old)
    header, before = read_submission_header(edit), read_submission_header(original)
    assert (header.instance_id, header.deprecated_id) == (new, old)
    assert (header.form_id, header.version, header.root_name) == (before.form_id, before.version, before.root_name)
    kept = [node for node in _others(edit) if node[0] != "meta"]
    assert kept == [node for node in _others(original) if node[0] != "meta"]


def test_an_encrypted_submission_is_not_rewritten() -> None:
    encrypted = (
        b'<data id="coop" encrypted="yes"><base64EncryptedKey>k</base64EncryptedKey>'
        b"<meta><instanceID>uuid:a</instanceID></meta></data>"
    )
    with pytest.raises(SubmissionError):
        rewrite_as_edit(encrypted, "uuid:b", "uuid:a")
