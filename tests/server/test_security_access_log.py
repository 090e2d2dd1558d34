"""Issue 15 row 3: device tokens never appear in clear in gunicorn's access log.

Rules:
- L1 ``fieldsync serve`` runs gunicorn with a logger whose access lines (the default format, and a
  custom one naming the path, the raw URI, the referer and the Authorization header) hold no device
  token and no credentials; the rest of the line is kept.
- L2 the JSON request log and the access log redact alike (``redact_tokens``).
"""

from __future__ import annotations

import io
import logging
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner
from gunicorn.config import Config

from server.request_log import redact_tokens

TOKEN = "Zq4TmB8rXw2LkP7cSECRETdevicetoken0123456789abc"
PATH = f"/v1/key/{TOKEN}/projects/7/submission"
CUSTOM = '%(h)s "%(r)s" %(U)s %({raw_uri}e)s "%(f)s" %({authorization}i)s %(s)s'


def _serve_args(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """The gunicorn command line ``fieldsync serve`` would exec."""
    from server import cli

    captured: list[list[str]] = []
    monkeypatch.setattr(cli.os, "execv", lambda _exe, args: captured.append(list(args)))
    monkeypatch.setenv("FIELDSYNC_VAR_DIR", str(tmp_path))
    # serve points prometheus-client at a multiprocess folder through the environment, and
    # prometheus-client picks its value store when first imported, by the variable's presence: import it
    # first, and undo the variable after the test, so this process keeps counting in memory.
    import server.metrics  # noqa: F401

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    monkeypatch.setenv("FIELDSYNC_DATABASE_URL", f"sqlite:///{tmp_path / 'db.sqlite3'}")
    result = CliRunner().invoke(cli.main, ["serve", "--port", "5999"])
    assert result.exit_code == 0, result.output
    (args,) = captured
    return args[args.index("gunicorn") + 1 :]


def _access_line(gunicorn_args: list[str], access_format: str | None) -> str:
    config = Config()
    parsed = config.parser().parse_args(
        [*gunicorn_args, *(["--access-logformat", access_format] if access_format else [])]
    )
    for key, value in vars(parsed).items():
        if value is not None and key != "args":
            config.set(key.lower(), value)
    logger = config.logger_class(config)
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.access_log.addHandler(handler)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "RAW_URI": f"{PATH}?deviceID=collect:abc",
        "PATH_INFO": PATH,
        "QUERY_STRING": "deviceID=collect:abc",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "10.0.0.7",
        "HTTP_REFERER": f"https://fieldsync.example{PATH}",
    }
    request = SimpleNamespace(headers=[("AUTHORIZATION", "Basic Y29hY2g6c2VjcmV0"), ("USER-AGENT", "Collect")])
    response = SimpleNamespace(status="201 Created", sent=12, headers=[])
    logger.access(response, request, environ, timedelta(milliseconds=3))
    return out.getvalue()


@pytest.mark.parametrize("access_format", [None, CUSTOM], ids=["default-format", "custom-format"])
def test_the_access_log_of_fieldsync_serve_holds_no_token(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, access_format: str | None
) -> None:
    line = _access_line(_serve_args(monkeypatch, tmp_path), access_format)
    assert TOKEN not in line
    assert "Y29hY2g6c2VjcmV0" not in line
    assert "/v1/key/***/projects/7/submission" in line and "201" in line


def test_both_logs_redact_alike() -> None:
    assert (
        redact_tokens(f"POST {PATH}?deviceID=x HTTP/1.1")
        == "POST /v1/key/***/projects/7/submission?deviceID=x HTTP/1.1"
    )
    assert redact_tokens("/v1/projects/7/forms/key") == "/v1/projects/7/forms/key"


def test_the_error_log_redacts_tokens_too(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = Config()
    parsed = config.parser().parse_args(_serve_args(monkeypatch, tmp_path))
    config.set("logger_class", parsed.logger_class)
    logger = config.logger_class(config)
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logger.error_log.addHandler(handler)
    logger.info("Invalid request from ip=%s: %s", "10.0.0.7", f"GET {PATH} HTTP/1.1 junk")
    assert TOKEN not in out.getvalue() and "/v1/key/***/" in out.getvalue()
