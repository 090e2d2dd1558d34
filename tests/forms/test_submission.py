"""Submission XML → SubmissionRecord.

Rules: SB1 the form is identified by the root id/version attributes, never the tag; SB2 the instance
id comes from meta/instanceID (any namespace), else the root instanceID attribute, else refusal;
SB3 repeats are lists even with one instance, unknown nodes are kept and listed, unknown names seen
twice become lists; SB4 attachments are the values of binary fields; SB5 encrypted envelopes are
kept raw; SB6 entity blocks become EntityChange with the saved properties; SB7 flatten always
indexes repeats from 1; SB8 short offsets are completed on request only; SB9 unsafe XML is refused.
"""

from __future__ import annotations

import pytest

from forms.errors import SubmissionError
from forms.schema import EntityDeclaration, Field, FormSchema
from forms.submission import (
    flatten_values,
    normalize_datetime_offset,
    parse_submission,
    read_submission_header,
)
from tests.forms.conftest import md_schema

HOUSEHOLD = """
| survey   |              |        |        |          |
|          | type         | name   | label  | save_to  |
|          | text         | head   | Head   | headname |
|          | image        | photo  | Photo  |          |
|          | begin_repeat | member | Member |          |
|          | text         | mname  | Name   |          |
|          | image        | mphoto | Photo  |          |
|          | end_repeat   |        |        |          |
| entities |              |        |        |          |
|          | list_name    | label  |        |          |
|          | households   | ${head} |       |          |
| settings |              |        |        |          |
|          | form_id      | version |       |          |
|          | household    | 7      |        |          |
"""


@pytest.fixture(scope="module")
def household() -> FormSchema:
    """A form with a repeat, binary fields and an entity declaration."""
    return md_schema(HOUSEHOLD)


ONE_MEMBER = b"""<?xml version='1.0'?>
<household_v0 xmlns="http://opendatakit.org/submission" id="household" version="7">
  <formhub><uuid>abc</uuid></formhub>
  <head>Amina</head>
  <photo>1.jpg</photo>
  <member><mname>Ali</mname><mphoto>2.jpg</mphoto></member>
  <note_x>a</note_x>
  <note_x>b</note_x>
  <meta>
    <entity dataset="households" create="1" id="e-1"><label>Amina</label></entity>
    <instanceID>uuid:1</instanceID>
    <instanceName>Amina</instanceName>
    <deprecatedID>uuid:0</deprecatedID>
  </meta>
</household_v0>"""


def test_header_uses_attributes_not_tag() -> None:
    """SB1/SB2: routing data without a schema."""
    header = read_submission_header(ONE_MEMBER)
    assert (header.form_id, header.version, header.root_name) == ("household", "7", "household_v0")
    assert (header.instance_id, header.deprecated_id, header.encrypted) == ("uuid:1", "uuid:0", False)


def test_values_with_schema(household: FormSchema) -> None:
    """SB3: one repeat instance is a list; unknown nodes kept and listed; a repeated unknown is a list."""
    record = parse_submission(ONE_MEMBER, household)
    assert record.values["member"] == [{"mname": "Ali", "mphoto": "2.jpg"}]
    assert record.values["formhub"] == {"uuid": "abc"}
    assert record.values["note_x"] == ["a", "b"]
    # This form version has no instance_name setting, so meta/instanceName is unknown too.
    assert record.unknown_paths == ("formhub", "formhub/uuid", "note_x", "meta/instanceName", "meta/deprecatedID")
    assert (record.instance_id, record.instance_name, record.deprecated_id) == ("uuid:1", "Amina", "uuid:0")


def test_values_without_schema() -> None:
    """SB3: without a schema a single instance cannot be known to repeat, and nothing is "unknown"."""
    record = parse_submission(ONE_MEMBER)
    assert record.values["member"] == {"mname": "Ali", "mphoto": "2.jpg"}
    assert record.unknown_paths == ()
    assert record.attachments == ()


def test_attachments(household: FormSchema) -> None:
    """SB4: file names of binary fields, repeats included."""
    assert parse_submission(ONE_MEMBER, household).attachments == ("1.jpg", "2.jpg")


def test_entity_create(household: FormSchema) -> None:
    """SB6: the meta/entity block with its saved properties."""
    (change,) = parse_submission(ONE_MEMBER, household).entities
    assert (change.list_name, change.entity_id, change.create, change.update) == ("households", "e-1", True, False)
    assert change.label == "Amina"
    assert dict(change.properties) == {"headname": "Amina"}
    assert (change.base_version, change.trunk_version, change.branch_id) == (None, None, None)


def test_entity_update_versions() -> None:
    """SB6: update attributes are read as ints; empty ones are None."""
    xml = b"""<data id="t"><meta><entity dataset="trees" create="0" update="true" id="e-9"
        baseVersion="3" trunkVersion="" branchId="b-1"><label>Oak</label></entity>
        <instanceID>uuid:2</instanceID></meta></data>"""
    (change,) = parse_submission(xml).entities
    assert (change.create, change.update, change.base_version, change.trunk_version, change.branch_id) == (
        False,
        True,
        3,
        None,
        "b-1",
    )


def test_entity_property_outside_its_scope_ignores_comments() -> None:
    """SB6: an entity in a repeat whose list is only declared at the top level finds no property there.

    The top-level declaration's property path has nothing below the repeat's path (an empty step);
    a comment in the repeat instance must not be taken for the property's element.
    """
    schema = FormSchema(
        form_id="t",
        version="1",
        title="t",
        fields=(
            Field(path="a", name="a", kind="question"),
            Field(path="r", name="r", kind="repeat"),
            Field(path="r/b", name="b", kind="question", repeat="r"),
        ),
        entities=(EntityDeclaration(list_name="trees", properties={"height": "a"}),),
    )
    for inside in (b"", b"<!-- note -->", b"<?pi x?>"):
        xml = (
            b'<data id="t"><a>7</a><r>' + inside + b'<b>x</b><meta><entity dataset="trees" id="e-1" create="1"/>'
            b"</meta></r><meta><instanceID>uuid:3</instanceID></meta></data>"
        )
        (change,) = parse_submission(xml, schema).entities
        assert (change.list_name, dict(change.properties)) == ("trees", {})


@pytest.mark.parametrize(
    ("xml", "instance_id"),
    [
        (
            b'<d id="f"><orx:meta xmlns:orx="http://openrosa.org/xforms"><orx:instanceID>uuid:o</orx:instanceID>'
            b"</orx:meta></d>",
            "uuid:o",
        ),
        (b'<d id="f" instanceID="uuid:attr"><a>1</a></d>', "uuid:attr"),
    ],
    ids=["orx-meta", "root-attribute"],
)
def test_instance_id_sources(xml: bytes, instance_id: str) -> None:
    """SB2: namespaced meta and the root attribute both work."""
    assert parse_submission(xml).instance_id == instance_id


def test_missing_instance_id() -> None:
    """SB2: no instance id is refused unless the caller gives a fallback."""
    xml = b'<d id="f"><a>1</a></d>'
    with pytest.raises(SubmissionError) as info:
        parse_submission(xml)
    assert info.value.code == "no_instance_id"
    assert parse_submission(xml, instance_id_fallback="sha256:x").instance_id == "sha256:x"


def test_missing_form_id() -> None:
    """SB1: a root without id cannot be routed."""
    with pytest.raises(SubmissionError) as info:
        read_submission_header(b"<data><meta><instanceID>uuid:1</instanceID></meta></data>")
    assert info.value.code == "form_id_missing"


def test_encrypted_envelope(household: FormSchema) -> None:
    """SB5: encrypted submissions are flagged and kept raw; the encrypted files are attachments."""
    xml = b"""<data id="household" version="7" encrypted="yes" xmlns="http://www.opendatakit.org/xforms/encrypted">
      <base64EncryptedKey>AAA=</base64EncryptedKey>
      <orx:meta xmlns:orx="http://openrosa.org/xforms"><orx:instanceID>uuid:e</orx:instanceID></orx:meta>
      <media><file>1.jpg.enc</file></media>
      <encryptedXmlFile>submission.xml.enc</encryptedXmlFile>
      <base64EncryptedElementSignature>SIG</base64EncryptedElementSignature>
    </data>"""
    assert read_submission_header(xml).encrypted
    record = parse_submission(xml, household)
    assert record.encrypted and record.instance_id == "uuid:e"
    assert record.values["base64EncryptedKey"] == "AAA="
    assert set(record.attachments) == {"1.jpg.enc", "submission.xml.enc"}
    assert record.entities == ()


def test_flatten_indexes_every_repeat() -> None:
    """SB7: 1-based indices on every list level, even a single instance."""
    values = {
        "a": "1",
        "member": [{"name": "x", "child": [{"cname": "c1"}]}, {"name": "y", "child": []}],
        "g": {"b": "2"},
        "dup": ["p", "q"],
    }
    assert flatten_values(values) == {
        "a": "1",
        "member[1]/name": "x",
        "member[1]/child[1]/cname": "c1",
        "member[2]/name": "y",
        "g/b": "2",
        "dup[1]": "p",
        "dup[2]": "q",
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2014-01-09T11:51:38.008+03", "2014-01-09T11:51:38.008+03:00"),
        ("2014-01-09T11:51:38.008-0530", "2014-01-09T11:51:38.008-05:30"),
        ("10:30:00.000+01", "10:30:00.000+01:00"),
        ("2024-05-02T10:00:00.000+01:00", "2024-05-02T10:00:00.000+01:00"),
        ("2024-05-02T10:00:00.000Z", "2024-05-02T10:00:00.000Z"),
        ("2024-05-02", "2024-05-02"),
        ("", ""),
    ],
    ids=["hours-only", "no-colon", "time", "complete", "zulu", "date-untouched", "empty"],
)
def test_normalize_datetime_offset(value: str, expected: str) -> None:
    """SB8: only short offsets after a time are completed."""
    assert normalize_datetime_offset(value) == expected


def test_values_are_kept_as_sent() -> None:
    """SB8: the record keeps the +03 offset; normalising is the exporter's choice."""
    xml = b'<d id="f"><start>2014-01-09T11:51:38.008+03</start><meta><instanceID>u</instanceID></meta></d>'
    assert parse_submission(xml).values["start"] == "2014-01-09T11:51:38.008+03"


@pytest.mark.parametrize(
    ("xml", "code"),
    [
        (b'<!DOCTYPE d [<!ENTITY x "y">]><d id="f">&x;</d>', "xml_unsafe"),
        (b'<d id="f">' + b"<g>" * 80 + b"</g>" * 80 + b"</d>", "xml_too_deep"),
        (b'<d id="f"><a></d>', "xml_malformed"),
    ],
    ids=["entity", "deep", "malformed"],
)
def test_unsafe_submissions(xml: bytes, code: str) -> None:
    """SB9: the safe parser's refusals surface as SubmissionError codes."""
    with pytest.raises(SubmissionError) as info:
        parse_submission(xml)
    assert info.value.code == code


def test_surrogate_emoji_are_repaired() -> None:
    """SB9: old Collect's surrogate-pair references become the emoji."""
    xml = b'<d id="f"><t>ok &#55357;&#56490;</t><meta><instanceID>u</instanceID></meta></d>'
    assert parse_submission(xml).values["t"] == "ok 💪"
