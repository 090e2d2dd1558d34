"""One proxy setting: ``TRUSTED_PROXIES`` decides which ``X-Forwarded-*`` hops every part of the server believes.

Rules:
- PX1 with ``TRUSTED_PROXIES`` > 0 a proxy's ``X-Forwarded-Proto: https`` makes the request secure
  (HSTS on every answer, the console cookie ``Secure``); with 0 the header is ignored.
- PX2 the console's former ``FIELDSYNC_TRUST_PROXY_HEADERS=1`` is read as one trusted proxy, unless
  ``FIELDSYNC_TRUSTED_PROXIES`` says otherwise; ``0`` trusts none.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from server.config import load_config


@pytest.mark.parametrize(("proxies", "secure"), [(0, False), (1, True)], ids=["no-proxy", "one-proxy"])
def test_px1_forwarded_proto_is_believed_only_from_trusted_proxies(
    app: Flask, client: FlaskClient, proxies: int, secure: bool
) -> None:
    app.config["TRUSTED_PROXIES"] = proxies
    response = client.get("/healthz/live", headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"})
    assert ("Strict-Transport-Security" in response.headers) is secure
    signin = client.get("/signin", headers={"X-Forwarded-Proto": "https"})
    assert ("Secure" in signin.headers.get("Set-Cookie", "")) is secure


@pytest.mark.parametrize(
    ("legacy", "trusted", "expected"),
    [("1", None, 1), ("0", None, 0), ("1", "2", 2), (None, None, 0)],
    ids=["legacy-on", "legacy-off", "new-wins", "neither"],
)
def test_px2_the_old_switch_is_an_alias(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, legacy: str | None, trusted: str | None, expected: int
) -> None:
    for name, value in (("FIELDSYNC_TRUST_PROXY_HEADERS", legacy), ("FIELDSYNC_TRUSTED_PROXIES", trusted)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    config = load_config({"VAR_DIR": str(tmp_path), "SECRET_KEY": "x"})
    assert config["TRUSTED_PROXIES"] == expected
    assert "TRUST_PROXY_HEADERS" not in config
