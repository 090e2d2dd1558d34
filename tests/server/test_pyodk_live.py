"""pyodk, ODK Central's own Python client, drives a running Fieldsync unchanged.

- PY1 pyodk logs in (``POST /v1/sessions`` with ``email``), lists and reads projects.
- PY2 ``projects.create_app_users`` creates app users and assigns them forms whose ids are not
  ASCII (``enquête_coopérative``) or are a dingbat (``✿_suivi``); each app user's formList then
  holds exactly its forms.
- PY3 ``forms.create`` uploads an XLSForm with its two attachments (draft, attachments, publish) under a
  dingbat id; ``forms.update`` publishes a new version through a draft (a new definition, then attachments
  only with a ``version_updater``); ``forms.list``/``get`` read them;
  ``forms.get_xml`` downloads the XForm (its dingbat file name in RFC 6266's ``filename*``).

The server is a real HTTP server (werkzeug, threaded) on a fresh SQLite database.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.pyodk_central import Central, running_central

FORM_IDS = ("enquête_coopérative", "✿_suivi")


def xform(form_id: str, title: str) -> bytes:
    """A one-question XForm whose id is ``form_id``."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<h:html xmlns="http://www.w3.org/2002/xforms" xmlns:h="http://www.w3.org/1999/xhtml"
        xmlns:jr="http://openrosa.org/javarosa" xmlns:orx="http://openrosa.org/xforms">
  <h:head>
    <h:title>{title}</h:title>
    <model>
      <instance>
        <data id="{form_id}" version="1">
          <nom/>
          <meta><instanceID/></meta>
        </data>
      </instance>
      <bind nodeset="/data/nom" type="string"/>
      <bind nodeset="/data/meta/instanceID" type="string" readonly="true()" jr:preload="uid"/>
    </model>
  </h:head>
  <h:body>
    <input ref="/data/nom"><label>Nom</label></input>
  </h:body>
</h:html>
""".encode()


@pytest.fixture(scope="module")
def central() -> Iterator[Central]:
    """Fieldsync over real HTTP with an admin (by email), a project and two published forms."""
    with running_central([(form_id, xform(form_id, form_id)) for form_id in FORM_IDS]) as running:
        yield running


def _media_xlsx(tmp_path: Path, form_id: str, version: str) -> Path:
    from tests.server.fixtures_forms import MEDIA_FORM_MD, xlsform

    markdown = MEDIA_FORM_MD.replace("| media_test | 1       |", f"| {form_id} | {version} |")
    path = tmp_path / f"{form_id}.xlsx"
    path.write_bytes(xlsform(markdown))
    return path


def test_py3_forms_created_with_attachments_and_updated_through_a_draft(central: Central, tmp_path: Path) -> None:
    form_id = "médias_✿"
    logo, villages = tmp_path / "logo.png", tmp_path / "villages.csv"
    logo.write_bytes(b"\x89PNG\r\n\x1a\n logo")
    villages.write_text("name,label\nv1,Douar Tafraout\n", encoding="utf-8")
    form = central.client.forms.create(definition=_media_xlsx(tmp_path, form_id, "1"), attachments=[logo, villages])
    assert (form.xmlFormId, form.projectId) == (form_id, central.project_id)
    published = central.client.forms.get(form_id)
    assert (published.version, published.state, published.publishedAt is not None) == ("1", "open", True)
    attachments = central.client.session.get(f"projects/{central.project_id}/forms/{form_id}/attachments").json()
    assert {(a["name"], a["exists"]) for a in attachments} == {("logo.png", True), ("villages.csv", True)}
    central.client.forms.update(form_id, definition=_media_xlsx(tmp_path, form_id, "2"))
    assert central.client.forms.get(form_id).version == "2"
    versions = central.client.session.get(f"projects/{central.project_id}/forms/{form_id}/versions").json()
    assert [v["version"] for v in versions] == ["1", "2"]
    assert form_id in {f.xmlFormId for f in central.client.forms.list()}
    assert 'version="2"' in central.client.forms.get_xml(form_id)
    # Attachments only: pyodk starts a draft from the published form (no body), uploads the file, and names
    # the new version with its version_updater (the draft's XForm is re-versioned, the other file carried over).
    villages.write_text("name,label\nv1,Douar Tafraout\nv2,Douar Imouzzer\n", encoding="utf-8")
    central.client.forms.update(form_id, attachments=[villages], version_updater=lambda v: f"{int(v) + 1}")
    assert central.client.forms.get(form_id).version == "3"
    assert 'version="3"' in central.client.forms.get_xml(form_id)
    attachments = central.client.session.get(f"projects/{central.project_id}/forms/{form_id}/attachments").json()
    assert {(a["name"], a["exists"]) for a in attachments} == {("logo.png", True), ("villages.csv", True)}
    served = central.client.session.get(f"projects/{central.project_id}/forms/{form_id}/attachments/villages.csv")
    assert served.status_code == 200 and "Douar Imouzzer" in served.text


def _form_list(central: Central, collect_url: str) -> list[str]:
    request = urllib.request.Request(f"{collect_url}/formList", headers={"X-OpenRosa-Version": "1.0"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return re.findall(r"<formID>([^<]+)</formID>", response.read().decode("utf-8"))


def test_py1_pyodk_lists_and_reads_projects(central: Central) -> None:
    projects = central.client.projects.list()
    assert [p.id for p in projects] == [central.project_id]
    project = central.client.projects.get()
    assert project.name == "Programme Souss-Massa — برنامج سوس ماسة" and project.archived is False


def test_py2_app_users_see_exactly_their_assigned_forms(central: Central) -> None:
    created = central.client.projects.create_app_users(
        display_names=["Téléphone Tiznit", "هاتف أكادير"], forms=[FORM_IDS[1]]
    )
    assert [u.displayName for u in created] == ["Téléphone Tiznit", "هاتف أكادير"]
    assert all(u.token and u.type == "field_key" for u in created)
    for user in created:
        assert _form_list(central, f"{central.url}/v1/key/{user.token}/projects/{central.project_id}") == [FORM_IDS[1]]
    listed = central.client.session.get(f"projects/{central.project_id}/app-users").json()
    assert {u.id for u in created} <= {row["id"] for row in listed}
    second = central.client.projects.create_app_users(display_names=["Tél Taroudant"], forms=list(FORM_IDS))
    collect = f"{central.url}/v1/key/{second[0].token}/projects/{central.project_id}"
    assert sorted(_form_list(central, collect)) == sorted(FORM_IDS)
