"""The feeds read by OData clients nobody here wrote, over real HTTP.

Rules:
- C1 python-odata (an OData 4.0 client) reflects ``$metadata`` into entity classes (one per repeat,
  typed properties), reads ``Submissions`` and a repeat table, follows ``@odata.nextLink`` under
  server-driven paging (``Prefer: odata.maxpagesize``), counts with ``/$count``, filters on a form
  field, and gets one submission by its key; all with HTTP Basic.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from tests.conftest import PERSONA_PASSWORD, Personas
from tests.server.test_odata_feed import survey  # noqa: F401  (fixture)


@pytest.fixture
def live_url(app: Flask) -> Iterator[str]:
    """The test's app served over HTTP on 127.0.0.1 (one request at a time, on the test's database)."""
    server = make_server("127.0.0.1", 0, app, threaded=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def test_c1_python_odata_reads_the_feed(
    client: FlaskClient,
    personas: Personas,
    survey: list[str],  # noqa: F811  (the fixture imported above)
    live_url: str,
) -> None:
    from odata import ODataService

    url = f"{live_url}/v1/projects/{personas.project_id}/forms/odata_survey.svc/"
    auth = requests.auth.HTTPBasicAuth("analyst-persona", PERSONA_PASSWORD)
    service = ODataService(url, auth=auth, reflect_entities=True, quiet_progress=True)
    assert set(service.entities) == {"Submissions", "Submissions.household.member", "Submissions.household.member.job"}
    submissions = service.entities["Submissions"]
    assert type(submissions.age).__name__ == "IntegerProperty"
    assert type(submissions.income).__name__ == "DecimalProperty"

    rows = list(service.query(submissions))
    assert [getattr(r, "__id") for r in rows] == survey
    assert service.query(submissions).count() == 24

    women = service.query(submissions).filter(submissions.sex == "f").all()
    assert [getattr(r, "__id") for r in women] == [survey[n] for n in range(24) if n % 5 != 4 and n % 2 == 0]
    one = service.query(submissions).get(survey[4])
    assert one.age == 18 + 28 and one.programme == "argan"

    paged = ODataService(
        url, auth=auth, reflect_entities=True, quiet_progress=True, extra_headers={"Prefer": "odata.maxpagesize=5"}
    )
    members = paged.entities["Submissions.household.member"]
    names = [r.mname for r in paged.query(members)]
    assert names == [f"M{n}-{m}" for n in range(24) for m in range(n % 3)]
