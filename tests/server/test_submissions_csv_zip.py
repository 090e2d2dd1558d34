"""ODK Central's ``GET .../submissions.csv.zip`` beside Fieldsync's export options.

- Z1 the files of the exported submissions are in ``media/`` unless ``attachments=false``.
- Z2 ``$filter`` on ``__system`` members keeps what Central's would; a form field in it is 400 (use
  ``field.<path>``); ``groupPaths``, ``splitSelectMultiples`` and camelCase Fieldsync options apply.
- Z3 without ``deletedFields=true`` a field the current version removed is left out.
- Z4 an unknown parameter is 400, before any byte.
- Z5 a NUL character in any value of a repeated parameter is 400 (it was a 500 on PostgreSQL), nothing audited.
"""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import Personas
from tests.server.fixtures_exports import table_rows, zip_tables
from tests.server.fixtures_forms import publish_form
from tests.server.test_submissions_support import PHOTO_XFORM, photo_submission, post_submission

PHOTO_V2 = (
    PHOTO_XFORM.replace(b'version="1"', b'version="2"')
    .replace(b"<site/>", b"")
    .replace(b'<bind nodeset="/data/site" type="string"/>', b"")
    .replace(b'<input ref="/data/site"><label>Site</label></input>', b"")
)


def _stored(app: Flask, client: FlaskClient, personas: Personas) -> str:
    publish_form(app, personas.project_id, PHOTO_XFORM, "photo_visit.xml")
    for k, photo in enumerate((b"PHOTO-A", b"PHOTO-B")):
        xml = photo_submission(f"uuid:z{k}", [f"p{k}.jpg"], site=f"site {k}")
        assert post_submission(client, personas.collect_prefix, xml, {f"p{k}.jpg": photo}).status_code == 201
    base = f"/v1/projects/{personas.project_id}/forms/photo_visit"
    reviewed = client.patch(f"{base}/submissions/uuid:z1", json={"reviewState": "approved"},
                            headers=personas.manager.headers)  # fmt: skip
    assert reviewed.status_code == 200
    return f"{base}/submissions.csv.zip"


def _get(client: FlaskClient, personas: Personas, url: str, **query: str) -> dict[str, str]:
    response = client.get(url, query_string=query, headers=personas.analyst.headers)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/zip"
    return zip_tables(response.get_data()) if query.get("attachments") == "false" else _with_media(response.data)


def _with_media(data: bytes) -> dict[str, str]:
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {n: zf.read(n).decode("latin-1") for n in zf.namelist()}


def test_z1_files_are_in_media_unless_left_out(app: Flask, client: FlaskClient, personas: Personas) -> None:
    url = _stored(app, client, personas)
    files = _get(client, personas, url)
    assert (files["media/p0.jpg"], files["media/p1.jpg"]) == ("PHOTO-A", "PHOTO-B")
    assert not any(name.startswith("media/") for name in _get(client, personas, url, attachments="false"))


def test_z2_system_filter_and_centrals_options(app: Flask, client: FlaskClient, personas: Personas) -> None:
    url = _stored(app, client, personas)
    approved = _get(client, personas, url, **{"$filter": "__system/reviewState eq 'approved'", "attachments": "false"})
    assert [row["KEY"] for row in table_rows(approved["photo_visit.csv"])] == ["uuid:z1"]
    only = _get(client, personas, url, **{"$filter": "__id eq 'uuid:z0'"})
    assert [n for n in only if n.startswith("media/")] == ["media/p0.jpg"]
    field = client.get(url, query_string={"$filter": "site eq 'x'"}, headers=personas.analyst.headers)
    assert (field.status_code, field.get_json()["details"]["problem"]) == (400, "odata_filter_invalid")
    by_field = _get(client, personas, url, **{"field.site": "site 0", "attachments": "false", "groupPaths": "false"})
    assert [row["KEY"] for row in table_rows(by_field["photo_visit.csv"])] == ["uuid:z0"]
    camel = _get(client, personas, url, reviewState="approved", attachments="false", splitSelectMultiples="true")
    assert [row["KEY"] for row in table_rows(camel["photo_visit.csv"])] == ["uuid:z1"]


def test_z3_deleted_fields_only_when_asked(app: Flask, client: FlaskClient, personas: Personas) -> None:
    url = _stored(app, client, personas)
    publish_form(app, personas.project_id, PHOTO_V2, "photo_visit.xml")
    current = table_rows(_get(client, personas, url, attachments="false")["photo_visit.csv"])
    assert "site" not in current[0]
    every = table_rows(_get(client, personas, url, attachments="false", deletedFields="true")["photo_visit.csv"])
    assert {row["site"] for row in every} == {"site 0", "site 1"}


def test_z4_an_unknown_parameter_is_400(app: Flask, client: FlaskClient, personas: Personas) -> None:
    url = _stored(app, client, personas)
    for query in ({"colour": "red"}, {"include_edits": "true"}, {"attachments": "maybe"}):
        response = client.get(url, query_string=query, headers=personas.analyst.headers)
        assert response.status_code == 400, query


def test_z5_a_nul_character_in_any_value_of_a_parameter_is_400_and_nothing_is_audited(
    app: Flask, client: FlaskClient, personas: Personas
) -> None:
    """No XML text can hold U+0000 and PostgreSQL cannot store it: the NUL hides in a repeated parameter's
    third value here (only the last value of each name was checked, and the audit row's commit was a 500)."""
    from server.db.models.audit import AuditEvent
    from server.store import db_session

    url = _stored(app, client, personas)

    def audited() -> int:
        with app.app_context():
            return db_session().query(AuditEvent).count()

    before = audited()
    for name in ("version", "submitter", "reviewState"):
        query = [(name, "1"), (name, "2"), (name, "a\x00b"), (name, "3")]
        for target in (url, url.replace("submissions.csv.zip", "export.zip")):
            response = client.get(target, query_string=query, headers=personas.analyst.headers)
            assert response.status_code == 400, (target, query, response.get_data(as_text=True)[:300])
            assert response.get_json()["details"]["problem"] == "nul_character"
    assert audited() == before
