"""pyodk's submission calls drive a running Fieldsync unchanged, on a form whose id is not ASCII (``enquête_✓``).

- PS1 ``submissions.create`` with a photo: pyodk posts the XML, then the photo to ``.../attachments/{name}``;
  the attachment list says it arrived; the same XML again is a safe retry; other XML under its id is 409.
- PS2 ``submissions.list`` and ``get`` read Central's fields (``reviewState`` null, ``submitterId``);
  the list is every submission in one answer, however many batches the server reads it in.
- PS3 ``get_table`` with ``$select``, ``$count`` and ``$expand=*`` reads the OData feed of the form.
- PS4 ``submissions.edit`` adds a version (``reviewState`` becomes ``edited``, versions newest first);
  an edit of a version that is no longer current is Central's 409.
- PS5 ``submissions.review`` with a comment, ``add_comment`` and ``list_comments``.

Each module runs on both stores (PostgreSQL when FIELDSYNC_TEST_POSTGRES_URL is set).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.services import submission_table
from tests.conftest import POSTGRES_URL
from tests.server.pyodk_central import Central, running_central

FORM_ID = "enquête_✓"
XFORM = f"""<?xml version="1.0" encoding="UTF-8"?>
<h:html xmlns="http://www.w3.org/2002/xforms" xmlns:h="http://www.w3.org/1999/xhtml"
        xmlns:jr="http://openrosa.org/javarosa" xmlns:orx="http://openrosa.org/xforms">
  <h:head>
    <h:title>Enquête ménage</h:title>
    <model>
      <instance>
        <data id="{FORM_ID}" version="1">
          <nom/>
          <photo/>
          <membre jr:template=""><age/></membre>
          <meta><instanceID/></meta>
        </data>
      </instance>
      <bind nodeset="/data/nom" type="string"/>
      <bind nodeset="/data/photo" type="binary"/>
      <bind nodeset="/data/membre/age" type="int"/>
      <bind nodeset="/data/meta/instanceID" type="string" readonly="true()" jr:preload="uid"/>
    </model>
  </h:head>
  <h:body>
    <input ref="/data/nom"><label>Nom</label></input>
    <upload ref="/data/photo" mediatype="image/*"><label>Photo</label></upload>
    <repeat nodeset="/data/membre"><input ref="/data/membre/age"><label>Âge</label></input></repeat>
  </h:body>
</h:html>
""".encode()


def submission(instance_id: str, nom: str, ages: tuple[int, ...] = (34, 7), deprecated_id: str | None = None) -> str:
    """A submission of ``enquête_✓`` with a photo and one ``membre`` per age."""
    members = "".join(f"<membre><age>{age}</age></membre>" for age in ages)
    deprecated = f"<deprecatedID>{deprecated_id}</deprecatedID>" if deprecated_id else ""
    return (
        f'<data id="{FORM_ID}" version="1"><nom>{nom}</nom><photo>maison.jpg</photo>{members}'
        f"<meta><instanceID>{instance_id}</instanceID>{deprecated}</meta></data>"
    )


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def central(request: pytest.FixtureRequest) -> Iterator[Central]:
    """Fieldsync over real HTTP with ``enquête_✓`` published, on each store."""
    if request.param == "postgresql" and not POSTGRES_URL:
        pytest.skip(reason="FIELDSYNC_TEST_POSTGRES_URL is not set (CI sets it; see .ci/run)")
    with running_central([(FORM_ID, XFORM)], request.param) as running:
        yield running


def _new_id() -> str:
    return f"uuid:{uuid.uuid4()}"


def _create(central: Central, tmp_path: Path, nom: str) -> str:
    photo = tmp_path / "maison.jpg"
    photo.write_bytes(b"\xff\xd8\xff\xe0 une maison \xff\xd9")
    instance_id = _new_id()
    created = central.client.submissions.create(submission(instance_id, nom), form_id=FORM_ID, attachments=[photo])
    assert created.instanceId == instance_id
    return instance_id


def test_ps1_create_with_a_photo_attachment(central: Central, tmp_path: Path) -> None:
    photo = tmp_path / "maison.jpg"
    photo.write_bytes(b"\xff\xd8\xff\xe0 une maison \xff\xd9")
    instance_id = _new_id()
    xml = submission(instance_id, "Fatima Zahra")
    created = central.client.submissions.create(xml, form_id=FORM_ID, device_id="collect:pyodk", attachments=[photo])
    assert (created.instanceId, created.deviceId, created.reviewState) == (instance_id, "collect:pyodk", None)
    assert [(a.name, a.exists) for a in created.attachments or []] == [("maison.jpg", True)]
    base = f"projects/{central.project_id}/forms/{FORM_ID}/submissions"
    downloaded = central.client.session.get(f"{base}/{instance_id}/attachments/maison.jpg")
    assert downloaded.content == photo.read_bytes()
    # A retry of the same XML answers the stored submission; other XML under the same id is refused.
    again = central.client.session.post(base, data=xml.encode(), headers={"Content-Type": "application/xml"})
    assert (again.status_code, again.json()["instanceId"]) == (200, instance_id)
    other = central.client.session.post(
        base, data=submission(instance_id, "Autre").encode(), headers={"Content-Type": "application/xml"}
    )
    assert (other.status_code, other.json()["code"]) == (409, 409.1)
    wrong = central.client.session.post(
        f"{base}/{instance_id}/attachments/autre.jpg", data=b"x", headers={"Content-Type": "image/jpeg"}
    )
    assert wrong.status_code == 404


def test_ps2_list_and_get_read_centrals_fields(
    central: Central, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(submission_table, "STREAM_BATCH", 1)  # every submission is a batch of its own
    instance_id = _create(central, tmp_path, "Youssef")
    _create(central, tmp_path, "Khadija")
    listed = {s.instanceId: s for s in central.client.submissions.list(form_id=FORM_ID)}
    assert instance_id in listed and len(listed) >= 2
    one = central.client.submissions.get(instance_id, form_id=FORM_ID)
    assert (one.instanceId, one.reviewState, one.submitterId) == (instance_id, None, 1)
    assert one.createdAt is not None
    response = central.client.session.get(f"projects/{central.project_id}/forms/{FORM_ID}/submissions")
    assert int(response.headers["X-Total-Count"]) == len(response.json()) == len(listed)


def test_ps3_get_table_select_count_expand(central: Central, tmp_path: Path) -> None:
    instance_id = _create(central, tmp_path, "Hassan")
    table = central.client.submissions.get_table(form_id=FORM_ID, select="nom,__id", count=True)
    assert table["@odata.count"] >= 1
    row = next(r for r in table["value"] if r["__id"] == instance_id)
    assert row == {"__id": instance_id, "nom": "Hassan"}
    expanded = central.client.submissions.get_table(form_id=FORM_ID, expand="*")
    row = next(r for r in expanded["value"] if r["__id"] == instance_id)
    assert [m["age"] for m in row["membre"]] == [34, 7]


def test_ps4_edit_adds_a_version_and_a_stale_edit_is_409(central: Central, tmp_path: Path) -> None:
    instance_id = _create(central, tmp_path, "Khadija")
    edit_id = _new_id()
    central.client.submissions.edit(
        instance_id, submission(edit_id, "Khadija B.", deprecated_id=instance_id), form_id=FORM_ID, comment="Nom"
    )
    edited = central.client.submissions.get(instance_id, form_id=FORM_ID)
    assert edited.reviewState == "edited"
    base = f"projects/{central.project_id}/forms/{FORM_ID}/submissions/{instance_id}"
    versions = central.client.session.get(f"{base}/versions").json()
    assert [(v["instanceId"], v["current"]) for v in versions] == [(edit_id, True), (instance_id, False)]
    assert "Khadija B." in central.client.session.get(f"{base}.xml").text
    stale = central.client.session.put(
        base,
        data=submission(_new_id(), "Khadija C.", deprecated_id=instance_id).encode(),
        headers={"Content-Type": "application/xml"},
    )
    assert (stale.status_code, stale.json()["details"]["problem"]) == (409, "stale_edit")
    # The photo carried over to the new version.
    assert [(a["name"], a["exists"]) for a in central.client.session.get(f"{base}/attachments").json()] == [
        ("maison.jpg", True)
    ]
    assert [c.body for c in central.client.submissions.list_comments(instance_id, form_id=FORM_ID)] == ["Nom"]


def test_ps5_review_and_comments(central: Central, tmp_path: Path) -> None:
    instance_id = _create(central, tmp_path, "Omar")
    central.client.submissions.review(instance_id, "hasIssues", form_id=FORM_ID, comment="Âge à vérifier ✓")
    assert central.client.submissions.get(instance_id, form_id=FORM_ID).reviewState == "hasIssues"
    central.client.submissions.review(instance_id, "approved", form_id=FORM_ID)
    added = central.client.submissions.add_comment(instance_id, "Vérifié sur place", form_id=FORM_ID)
    assert (added.body, added.actorId) == ("Vérifié sur place", 1)
    comments = central.client.submissions.list_comments(instance_id, form_id=FORM_ID)
    assert [c.body for c in comments] == ["Âge à vérifier ✓", "Vérifié sur place"]
    assert central.client.submissions.get(instance_id, form_id=FORM_ID).reviewState == "approved"
    approved = central.client.session.get(
        f"projects/{central.project_id}/forms/{FORM_ID}/submissions", params={"reviewState": "approved"}
    ).json()
    assert [s["instanceId"] for s in approved] == [instance_id]
