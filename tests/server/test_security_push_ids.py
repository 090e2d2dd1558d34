"""Issue 15 row 6: a pushed item's ids must be the ones its XML states.

Rules:
- I1 an XML item whose ``instance_id``, ``form_id``, ``form_version`` or ``deprecated_id`` differs from
  the XML's meta/instanceID, root id, root version or meta/deprecatedID is ``rejected`` with reason
  ``item_mismatch`` naming the field; no submission is stored (the refused item is held for review,
  as every refused item is), and the batch's other items are not affected.
- I2 an item whose ids match is stored as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from tests.conftest import Personas
from tests.server.faulty_transport import FaultyTransport, _submissions_dump
from tests.server.fixtures_forms import PublishedForm, published_coop  # noqa: F401 (fixture)

SAMPLES = Path(__file__).resolve().parents[2] / "examples" / "submissions" / "coop_diagnostic"


def _xml() -> str:
    return (SAMPLES / "01_tamount_argan_tiznit.xml").read_text(encoding="utf-8")


def _in_xml(xml: str) -> str:
    return xml.split("<instanceID>", 1)[1].split("</instanceID>", 1)[0]


def _item(form: PublishedForm, xml: str, **overrides: Any) -> dict[str, Any]:
    item = {
        "type": "submission",
        "instanceId": _in_xml(xml),
        "formId": form.xml_form_id,
        "formVersion": form.version,
        "data": xml,
    }
    return {**item, **overrides}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"instanceId": "uuid:00000000-0000-4000-8000-0000000000aa"}, "instanceId"),
        ({"formId": "another_form"}, "formId"),
        ({"formVersion": "1999"}, "formVersion"),
        ({"deprecatedId": "uuid:00000000-0000-4000-8000-0000000000bb"}, "deprecatedId"),
    ],
    ids=["instance_id", "form_id", "form_version", "deprecated_id"],
)
def test_an_item_whose_ids_differ_from_its_xml_is_refused_and_nothing_is_stored(
    client: FlaskClient,
    session: Session,
    personas: Personas,
    published_coop: PublishedForm,  # noqa: F811
    overrides: dict[str, str],
    field: str,
) -> None:
    before = _submissions_dump(session, personas.project_id)
    transport = FaultyTransport(client, personas.device.headers, personas.project_id)
    reply = transport.push("phone-1", [_item(published_coop, _xml(), **overrides)], "ok")
    assert reply is not None
    result = reply["results"][0]
    assert (result["status"], result["reason"]) == ("rejected", "item_mismatch"), result
    assert result["detail"].startswith(field)
    session.expire_all()
    assert _submissions_dump(session, personas.project_id) == before


def test_a_matching_item_is_stored_next_to_a_refused_one(
    client: FlaskClient,
    personas: Personas,
    published_coop: PublishedForm,  # noqa: F811
) -> None:
    xml = _xml()
    wrong = _item(published_coop, xml.replace(_in_xml(xml), "uuid:00000000-0000-4000-8000-0000000000cc"))
    wrong["instanceId"] = _in_xml(xml)
    transport = FaultyTransport(client, personas.device.headers, personas.project_id)
    reply = transport.push("phone-1", [wrong, _item(published_coop, xml)], "ok")
    assert reply is not None
    statuses = [r["status"] for r in reply["results"]]
    assert statuses[0] == "rejected" and statuses[1] in ("created", "awaiting_attachments"), reply
