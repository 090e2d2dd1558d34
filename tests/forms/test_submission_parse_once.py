"""Ingestion reads a submission's header, then its record, from the same bytes: the XML is parsed once."""

from __future__ import annotations

import pytest

import forms.submission as submission
from forms.submission import parse_submission, read_submission_header

XML = b'<data id="coop" version="1"><name>Tifawin</name><meta><instanceID>uuid:one</instanceID></meta></data>'


def test_header_then_record_parse_the_document_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    real = submission.parse_untrusted_xml

    def counting(data: bytes) -> object:
        calls.append(data)
        return real(data)

    monkeypatch.setattr(submission, "parse_untrusted_xml", counting)
    xml = bytes(XML)  # a fresh object: the memo is keyed by identity
    assert read_submission_header(xml).instance_id == "uuid:one"
    assert parse_submission(xml).values["name"] == "Tifawin"
    assert len(calls) == 1
    other = XML.replace(b"Tifawin", b"Nakhil")
    assert parse_submission(other).values["name"] == "Nakhil"  # other bytes: parsed anew
    assert len(calls) == 2
