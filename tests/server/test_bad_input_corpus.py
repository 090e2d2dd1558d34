"""The bad-input corpus: every write endpoint of the role matrix, sent what an attacker or a broken client sends.

Rules (issue 15, "the adversarial inputs become a corpus"):
- B1 no input of the corpus gets a 5xx from any write endpoint (JSON API, OpenRosa, sync), on either store;
- B2 refused inputs leave the store exactly as it was (every table, row by row, compared before and after the
  case's whole corpus), and each 4xx says what is wrong (a JSON ``message``, or OpenRosa's XML message); a
  sync push keeps its answer for the batch's resend, by design, so only its statuses are checked;
- B3 the same holds for hostile path values: ids past 64 bits, NUL, a path climbing out, very long names.

The endpoints come from the role matrix (``tests/server/role_matrix_*.py``), which a test keeps complete: a
new write endpoint is in this corpus the day it gets its role-matrix row. Each case is sent by a persona
allowed to use it, so the refusal is about the input, never about the role. The console's routes are left
out: their POSTs are refused for a missing CSRF token before any input is read (tests/server/console).

An endpoint that takes no body (a publish, a revoke, a DELETE) may ignore a body it does not read, and one that
stores raw bytes (a form's media file) has no wrong body: a 2xx there is allowed, and its store check is
skipped; it still must never answer 5xx.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import Personas
from tests.server.role_matrix import Case
from tests.server.test_role_matrix import CASES, _headers, prepare

WRITES = [(area, case) for area, case in CASES if case.method in ("POST", "PUT", "PATCH", "DELETE")]
WRITES = [(area, case) for area, case in WRITES if area != "console"]

BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]><data>&lol3;</data>'
)

# (name, Content-Type, body)
BODIES: list[tuple[str, str, bytes]] = [
    ("truncated-json", "application/json", b'{"name": "Coop'),
    ("json-array", "application/json", b"[]"),
    ("json-number", "application/json", b"42"),
    ("json-null", "application/json", b"null"),
    ("json-deep", "application/json", b"[" * 20000 + b"]" * 20000),
    ("json-bad-utf8", "application/json", b'{"name": "\xff\xfe\xfd", "items": "\xc3"}'),
    ("json-nul", "application/json", json.dumps({"name": "a\u0000b", "username": "\u0000"}).encode()),
    (
        "json-wrong-types",
        "application/json",
        json.dumps({"name": {"$gt": ""}, "items": "all", "role": 7, "password": [], "state": None}).encode(),
    ),
    ("json-huge-number", "application/json", b'{"name": 1e999999, "id": 123456789012345678901234567890}'),
    ("json-as-text-plain", "text/plain", b'{"name": "Projet CSRF", "username": "x", "password": "long enough pw"}'),
    ("form-encoded", "application/x-www-form-urlencoded", b"name=Projet&username=x&password=long+enough+pw"),
    ("xml-entities", "text/xml", BILLION_LAUGHS),
    ("multipart-no-parts", "multipart/form-data; boundary=zzz", b"--zzz\r\nnot a part header\r\n\r\nbody"),
    ("multipart-no-boundary", "multipart/form-data", b"--\r\n\r\n"),
]

# (name, how to spoil a filled path)
PATHS: list[tuple[str, Any]] = [
    ("id-past-64-bits", lambda path: re.sub(r"/\d+(?=/|$)", "/" + "9" * 30, path)),
    ("nul-in-name", lambda path: _spoil_names(path, "x%00y")),
    ("climbing-name", lambda path: _spoil_names(path, "..%2F..%2Fetc%2Fpasswd")),
    ("long-name", lambda path: _spoil_names(path, "n" * 5000)),
]

# Tables that a refused request may still touch: none. (If one ever must, name it here with the reason.)
VOLATILE: dict[str, str] = {}


NAMED_SEGMENTS = ("forms", "submissions", "entities", "presets", "indicators", "webhooks", "versions")


def _spoil_names(path: str, value: str) -> str:
    """Replace each non-numeric segment after a project's id (a form id, a name, an instance id)."""
    parts = path.split("/")
    for i, part in enumerate(parts):
        if i > 3 and part and not part.isdigit() and parts[i - 1] in NAMED_SEGMENTS:
            parts[i] = value
    return "/".join(parts)


def _dump(sessions: sessionmaker[Session]) -> dict[str, list[tuple[str, ...]]]:
    """Every row of every table, as text, in primary-key order (a session of its own, closed at once)."""
    from server.db.base import Base

    dump: dict[str, list[tuple[str, ...]]] = {}
    with sessions() as session:
        for table in Base.metadata.sorted_tables:
            if table.name in VOLATILE:
                continue
            order = list(table.primary_key.columns) or list(table.columns)
            rows = session.execute(select(table).order_by(*order)).all()
            dump[table.name] = [tuple(repr(v) for v in row) for row in rows]
    return dump


def _changed(before: dict[str, list[tuple[str, ...]]], after: dict[str, list[tuple[str, ...]]]) -> list[str]:
    return [name for name in before if before[name] != after.get(name)]


def _sender(case: Case) -> str:
    """A persona the well-formed request succeeds for (the input is then the only thing wrong)."""
    for persona in ("admin", "manager", "device", "coach", "analyst", "anonymous"):
        if case.expected.get(persona, 500) < 400:
            return persona
    return "admin"


def _names_the_problem(response: Any) -> bool:
    if response.mimetype == "application/json":
        body = response.get_json(silent=True)
        return isinstance(body, dict) and bool(str(body.get("message") or "").strip())
    text = response.get_data(as_text=True)
    return bool(re.search(r"<message[^>]*>[^<]+</message>", text)) or bool(text.strip())


def _every_item_rejected(response: Any) -> bool:
    """A sync push answers 200 with an outcome per item: refusing each item is its way of refusing the body
    (and the answer is kept for the batch's resend, by design, so its store check does not apply)."""
    body = response.get_json(silent=True) if response.mimetype == "application/json" else None
    results = body.get("results") if isinstance(body, dict) else None
    return isinstance(results, list) and all(r.get("status") == "rejected" for r in results)


def _takes_a_body(case: Case) -> bool:
    """A JSON or form body it reads; a raw file (a form's media file, a tus chunk) is any bytes, never wrong."""
    raw = "data" in case.kwargs and not str(case.kwargs.get("content_type", "")).startswith("multipart/")
    return case.json is not None or ("data" in case.kwargs and not raw)


def _spoiled_bodies(good: dict[str, Any] | None) -> list[tuple[str, str, bytes]]:
    """The endpoint's own well-formed body, spoiled: what a cross-site form or a confused client sends."""
    if not good:
        return []
    spoiled = [
        ("own-body-as-text-plain", "text/plain", json.dumps(good).encode()),
        ("own-body-form-encoded", "application/x-www-form-urlencoded", urlencode(good).encode()),
        ("own-body-extra-field", "application/json", json.dumps({**good, "not_a_field": True}).encode()),
    ]
    for key in good:
        spoiled.append((f"own-body-{key}-as-list", "application/json", json.dumps({**good, key: [good[key]]}).encode()))
        if isinstance(good[key], str):
            nul = {**good, key: good[key] + "\u0000"}
            spoiled.append((f"own-body-{key}-with-nul", "application/json", json.dumps(nul).encode()))
    return spoiled


@pytest.mark.parametrize(("area", "case"), WRITES, ids=[f"{a}:{c.method} {c.path}" for a, c in WRITES])
def test_b1_b2_b3_bad_input_is_refused_cleanly(
    client: FlaskClient, app: Flask, personas: Personas, db: sessionmaker[Session], area: str, case: Case
) -> None:
    persona = _sender(case)
    path, good = prepare(app, personas, area, case, persona)
    headers = _headers(personas, persona)
    body_less = not _takes_a_body(case)
    wrong: list[str] = []
    before = None if body_less else _dump(db)  # one dump per case: the corpus is big, the tables many
    for name, content_type, body in BODIES + _spoiled_bodies(good):
        response = client.open(path, method=case.method, data=body, headers={**headers, "Content-Type": content_type})
        status = response.status_code
        if status >= 500:
            wrong.append(f"{name}: {status} {response.get_data(as_text=True)[:200]}")
        elif status >= 400 and not _names_the_problem(response):
            wrong.append(f"{name}: {status} with no message")
        elif status < 400 and not body_less and not _every_item_rejected(response):
            wrong.append(f"{name}: accepted with {status}")
    for name, spoil in PATHS:
        spoiled = spoil(path)
        if spoiled != path:
            response = client.open(spoiled, method=case.method, headers=headers)
            if response.status_code >= 500:
                wrong.append(f"path {name}: {response.status_code} {response.get_data(as_text=True)[:200]}")
            elif response.status_code < 400 and not body_less:
                wrong.append(f"path {name}: accepted with {response.status_code}")
    if before is not None and not any("accepted" in w for w in wrong):
        changed = _changed(before, _dump(db))
        if changed and not case.path.endswith("/sync/push"):
            wrong.append(f"every input was refused, yet the store changed in {changed}")
    assert not wrong, "\n".join(wrong)
