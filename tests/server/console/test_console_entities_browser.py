"""The conflicts queue in a real browser, told in French and in Arabic (issue 18).

Story R1: two phones downloaded the same entrepreneur, went offline and both changed her phone number:
phone A sends an ODK Collect update (the real OpenRosa submission endpoint), phone B pushes an entity
change (the real sync endpoint). The reviewer finds the conflict in the queue with both values, who wrote
each and from which version, picks phone A's value (not the provisional winner) and resolves it; the
entity list that Collect downloads (the form's manifest, then its ``entrepreneurs.csv``) carries it.
Along the way each new page passes axe-core with no serious or critical violation and is photographed at
360 px and 1280 px.
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
import xml.etree.ElementTree as ET
from typing import Any

import pytest
import requests

from tests.server.console.conftest import LiveServer, axe_violations, screenshot
from tests.server.fixtures_forms import EXAMPLES

pytestmark = pytest.mark.browser

SUBMISSIONS = EXAMPLES.parent / "submissions" / "entrepreneur_followup"
KHADIJA = "39590051-7f2e-47f5-81e8-d0537904601c"
COLLECT = {"X-OpenRosa-Version": "1.0", "User-Agent": "org.odk.collect.android/v2025.2.1 test"}
WORDS = {
    "fr": {
        "winner": "gagnante provisoire",
        "resolved": "Le conflit est résolu",
        "resolve": "Résoudre avec ces valeurs",
    },
    "ar": {"winner": "الفائزة مؤقتًا", "resolved": "حُسم التعارض", "resolve": "الحسم بهذه القيم"},
}


def _phone(server: LiveServer, name: str) -> str:
    from server.services import accounts
    from server.store import get_store

    with server.app.app_context():
        session = get_store().sessions()
        try:
            return accounts.create_device(session, server.project_id, name, actor="user:1").token
        finally:
            session.close()


def _submit(server: LiveServer, token: str, xml: str) -> None:
    files = {"xml_submission_file": ("submission.xml", xml.encode(), "text/xml")}
    url = server.at(f"/v1/key/{token}/projects/{server.project_id}/submission?deviceID=collect%3A{token[:8]}")
    response = requests.post(url, files=files, headers=COLLECT, timeout=30)
    assert response.status_code == 201, response.text[:500]


def _example(name: str, entity_id: str, **replace: str) -> str:
    text = (SUBMISSIONS / name).read_text(encoding="utf-8").replace(KHADIJA, entity_id)
    text = re.sub(r"<instanceID>uuid:[^<]+</instanceID>", f"<instanceID>uuid:{uuid.uuid4()}</instanceID>", text)
    for old, new in replace.items():
        text = text.replace(old, new)
    return text


def _entity(server: LiveServer, token: str, entity_id: str) -> dict[str, Any]:
    url = server.at(f"/v1/projects/{server.project_id}/entities/entrepreneurs/{entity_id}")
    response = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert response.status_code == 200, response.text[:500]
    result: dict[str, Any] = response.json()
    return result


def _push(server: LiveServer, token: str, item: dict[str, Any]) -> None:
    batch = f"batch-{item['opId']}"
    body = {"protocol": "fieldsync/2", "deviceId": item["dot"]["w"], "batchId": batch, "items": [item]}
    response = requests.post(
        server.at(f"/v1/projects/{server.project_id}/sync/push"),
        data=json.dumps(body),
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": batch, "Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 200, response.text[:500]
    assert response.json()["results"][0]["status"] == "conflict", response.text[:500]


def _collect_entity_list(server: LiveServer, token: str) -> dict[str, dict[str, str]]:
    """What Collect downloads: the manifest's entity list, then that CSV."""
    base = f"/v1/key/{token}/projects/{server.project_id}/forms/entrepreneur_followup/manifest"
    manifest = requests.get(server.at(base), headers=COLLECT, timeout=30)
    assert manifest.status_code == 200
    ns = {"m": "http://openrosa.org/xforms/xformsManifest"}
    files = ET.fromstring(manifest.content).findall("m:mediaFile", ns)
    (entity_list,) = [f for f in files if f.get("type") == "entityList"]
    url = entity_list.findtext("m:downloadUrl", namespaces=ns)
    assert url is not None and url.endswith("/entrepreneurs.csv")
    listing = requests.get(url, headers=COLLECT, timeout=30)
    assert listing.status_code == 200
    return {row["name"]: row for row in csv.DictReader(io.StringIO(listing.content.decode("utf-8")))}


@pytest.fixture(scope="module")
def held(live_server: LiveServer) -> dict[str, int]:
    """One held push item and one refused submission in the live server's project (their ids)."""
    from types import SimpleNamespace

    from tests.server.role_matrix_refused_submissions import with_refused
    from tests.server.role_matrix_sync import with_held_item

    token = _phone(live_server, "Téléphone refusé")
    project = SimpleNamespace(
        project_id=live_server.project_id, collect_prefix=f"/v1/key/{token}/projects/{live_server.project_id}"
    )
    return {**with_held_item(live_server.app, project), **with_refused(live_server.app, project)}  # type: ignore[arg-type]


def test_r1_two_offline_phones_conflict_and_the_reviewer_settles_it(
    admin_page: Any, live_server: LiveServer, locale: str, held: dict[str, int]
) -> None:
    page, words, pid = admin_page, WORDS[locale], live_server.project_id
    entity_id = str(uuid.uuid4())
    phone_a, phone_b = _phone(live_server, f"Téléphone A {locale}"), _phone(live_server, f"Téléphone B {locale}")
    _submit(live_server, phone_a, _example("01_create_khadija_tafraout.xml", entity_id))
    seen_by_b = _entity(live_server, phone_b, entity_id)  # phone B downloads version 1, then goes offline
    assert seen_by_b["version"] == 1
    value_a, value_b = "0661000001", "0662000002"
    _submit(
        live_server,
        phone_a,
        _example(
            "02_update_khadija_growth.xml", entity_id, **{"<phone>0667214093</phone>": f"<phone>{value_a}</phone>"}
        ),
    )
    _push(
        live_server,
        phone_b,
        {
            "type": "entity",
            "opId": f"phone-b-{entity_id}",
            "dot": {"w": f"phone-b-{locale}", "s": 1},
            "entity": {"list": "entrepreneurs", "id": entity_id},
            "baseRev": seen_by_b["rev"],
            "fields": {"phone": value_b},
            "hlc": 1_800_000_000_000,  # 15 January 2027, after phone A's capture: phone B's value wins provisionally
        },
    )

    page.goto(live_server.at(f"/projects/{pid}/conflicts"))
    card = page.locator(f"[id='c-entrepreneurs-{entity_id}']")
    rows = card.locator("table.candidates tbody tr")
    assert rows.count() == 2
    assert value_b in rows.nth(0).inner_text() and words["winner"] in rows.nth(0).inner_text()
    assert value_a in rows.nth(1).inner_text()
    assert "1" in rows.nth(1).locator("td").nth(4).inner_text()  # phone A's update was based on version 1
    assert page.locator("html").get_attribute("dir") == ("rtl" if locale == "ar" else "ltr")
    assert axe_violations(page) == []
    screenshot(page, f"conflicts-{locale}")

    card.get_by_label(value_a, exact=True).check()
    card.get_by_role("button", name=words["resolve"]).click()
    page.wait_for_load_state()
    assert words["resolved"] in page.locator(".notice").inner_text()
    assert page.locator(f"[id='c-entrepreneurs-{entity_id}']").count() == 0

    assert _entity(live_server, phone_b, entity_id)["conflict"] is None
    served = _collect_entity_list(live_server, phone_a)
    assert served[entity_id]["phone"] == value_a

    page.goto(live_server.at(f"/projects/{pid}/entities/entrepreneurs/{entity_id}"))
    history = page.locator("table tbody tr")
    assert history.count() == 4  # create, phone A, phone B, the resolution
    assert axe_violations(page) == []
    screenshot(page, f"entity-{locale}")
    for name, path in (
        ("entity-table", f"/projects/{pid}/entities/entrepreneurs"),
        ("quarantine", f"/projects/{pid}/quarantine"),
        ("refused", f"/projects/{pid}/refused"),
        ("held-item", f"/projects/{pid}/quarantine/{held['held']}"),
        ("refused-item", f"/projects/{pid}/refused/{held['refused_id']}"),
    ):
        page.goto(live_server.at(path))
        assert axe_violations(page) == [], name
        screenshot(page, f"{name}-{locale}")
