"""Role matrix rows for the OData feeds and Central's datasets API: submission readers (admin, manager,
analyst) read a form's feed; entity readers (and the coach's phone) read datasets and their feed;
managers and admins write datasets and entities; outsiders get 403."""

from __future__ import annotations

from typing import Any

from flask import Flask

from tests.conftest import Personas
from tests.server.fixtures_forms import COOP_XLSX, publish_form
from tests.server.role_matrix import Case, statuses

SUBMISSION_READERS = ("admin", "manager", "analyst")
ENTITY_READERS = ("admin", "manager", "coach", "analyst", "device")
WRITERS = ("admin", "manager")
_SVC = "/v1/projects/{pid}/forms/coop_diagnostic.svc"
_SVC_RULE = "/v1/projects/<int:project_id>/forms/<xml_form_id>.svc"
_DS = "/v1/projects/{pid}/datasets"
_DS_RULE = "/v1/projects/<int:project_id>/datasets"
_ENTITY_RULE = f"{_DS_RULE}/<name>/entities/<uuid>"


def coop_form(app: Flask, personas: Personas) -> dict[str, Any]:
    """Publish the coop example (its feed has no submissions yet)."""
    publish_form(app, personas.project_id, COOP_XLSX)
    return {}


def dataset_with_entity(app: Flask, personas: Personas) -> dict[str, Any]:
    """A dataset ``trees`` with a property ``species`` and one entity ``t1``."""
    from server.services import datasets
    from server.store import get_store

    with app.app_context():
        session = get_store().sessions()
        try:
            datasets.create_dataset(session, personas.project_id, "trees", "test")
            datasets.add_property(session, personas.project_id, "trees", "species", "test")
            datasets.create_entity(session, personas.project_id, "trees", "t1", "Tree", {"species": "argan"}, "test")
        finally:
            session.close()
    return {}


def _case(method: str, path: str, rule: str, ok: int, allowed: tuple[str, ...], setup: str, **kw: Any) -> Case:
    return Case(method, path, rule, statuses(ok, allowed=allowed), setup=setup, **kw)


CASES = [
    _case("GET", _SVC, _SVC_RULE, 200, SUBMISSION_READERS, "coop_form"),
    _case("GET", f"{_SVC}/$metadata", f"{_SVC_RULE}/$metadata", 200, SUBMISSION_READERS, "coop_form"),
    _case("GET", f"{_SVC}/Submissions", f"{_SVC_RULE}/<path:resource>", 200, SUBMISSION_READERS, "coop_form"),
    _case("GET", f"{_DS}/trees.svc", f"{_DS_RULE}/<name>.svc", 200, ENTITY_READERS, "dataset_with_entity"),
    _case(
        "GET", f"{_DS}/trees.svc/$metadata", f"{_DS_RULE}/<name>.svc/$metadata", 200, ENTITY_READERS,
        "dataset_with_entity",
    ),
    _case(
        "GET", f"{_DS}/trees.svc/Entities", f"{_DS_RULE}/<name>.svc/<path:resource>", 200, ENTITY_READERS,
        "dataset_with_entity",
    ),
    _case("GET", _DS, _DS_RULE, 200, ENTITY_READERS, "dataset_with_entity"),
    _case("POST", _DS, _DS_RULE, 200, WRITERS, "dataset_with_entity", json={"name": "ds_{persona}"}),
    _case("GET", f"{_DS}/trees", f"{_DS_RULE}/<name>", 200, ENTITY_READERS, "dataset_with_entity"),
    _case(
        "POST", f"{_DS}/trees/properties", f"{_DS_RULE}/<name>/properties", 200, WRITERS, "dataset_with_entity",
        json={"name": "height"},
    ),
    _case("GET", f"{_DS}/trees/entities", f"{_DS_RULE}/<name>/entities", 200, ENTITY_READERS, "dataset_with_entity"),
    _case(
        "POST", f"{_DS}/trees/entities", f"{_DS_RULE}/<name>/entities", 200, WRITERS, "dataset_with_entity",
        json={"label": "New tree", "data": {"species": "oak"}},
    ),
    _case("GET", f"{_DS}/trees/entities/t1", _ENTITY_RULE, 200, ENTITY_READERS, "dataset_with_entity"),
    _case(
        "PATCH", f"{_DS}/trees/entities/t1?force=true", _ENTITY_RULE, 200, WRITERS, "dataset_with_entity",
        json={"data": {"species": "palm"}},
    ),
    _case("DELETE", f"{_DS}/trees/entities/t1", _ENTITY_RULE, 200, WRITERS, "dataset_with_entity"),
    _case("POST", f"{_DS}/trees/entities/t1/restore", f"{_ENTITY_RULE}/restore", 200, WRITERS, "dataset_with_entity"),
]  # fmt: skip
