"""The run: settings, the context every benchmark receives, and the loop that runs them in order.

A context owns the fresh database, the running gunicorn, the bench accounts and what the
benchmarks share (the published bench forms, the raw-database references measured once per run).
Which endpoints exist is read from the app's URL map, so a benchmark whose endpoint has not landed
yet is reported as not available instead of failing or being dropped.
"""

from __future__ import annotations

import os
import re
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import requests

from bench.database import BenchDatabase
from bench.load import ClientMode
from bench.payloads import BENCH_FORM_VERSION, bench_form_id, build_bench_xlsform
from bench.results import BenchmarkResult
from bench.server_process import Accounts, Server

REPO_ROOT = Path(__file__).resolve().parent.parent


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def _env_ints(name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    value = os.environ.get(name)
    return tuple(int(v) for v in value.split(",") if v.strip()) if value else default


def default_workers() -> int:
    """gunicorn workers as ``fieldsync serve`` picks them: 2 x cores + 1."""
    return 2 * (os.cpu_count() or 1) + 1


@dataclass
class Settings:
    """Sizes and rounds; every one can be set by an environment variable or a CLI flag."""

    rounds: int = field(default_factory=lambda: _env_int("FIELDSYNC_BENCH_ROUNDS", 3))
    warmup: int = field(default_factory=lambda: _env_int("FIELDSYNC_BENCH_WARMUP", 1))
    workers: int = field(default_factory=lambda: _env_int("FIELDSYNC_BENCH_WORKERS", default_workers()))
    threads: int = field(default_factory=lambda: _env_int("FIELDSYNC_BENCH_THREADS", 4))
    clients: int = field(default_factory=lambda: _env_int("FIELDSYNC_BENCH_CLIENTS", 8))
    # Threads by default: on 2 cores shared with the server, paired A/B runs gave threads 20-50% more
    # formList req/s than processes (the processes take CPU from the server); see bench/load.py.
    client_mode: ClientMode = field(
        default_factory=lambda: (
            "processes" if os.environ.get("FIELDSYNC_BENCH_CLIENT_MODE") == "processes" else "threads"
        )
    )
    formlist_requests: int = field(default_factory=lambda: _env_int("FIELDSYNC_BENCH_FORMLIST_REQUESTS", 1000))
    ingest_submissions: int = field(default_factory=lambda: _env_int("FIELDSYNC_BENCH_INGEST_SUBMISSIONS", 400))
    push_batches: int = field(default_factory=lambda: _env_int("FIELDSYNC_BENCH_PUSH_BATCHES", 4))
    push_batch_size: int = field(default_factory=lambda: _env_int("FIELDSYNC_BENCH_PUSH_BATCH_SIZE", 200))
    export_sizes: tuple[int, ...] = field(
        default_factory=lambda: _env_ints("FIELDSYNC_BENCH_EXPORT_SIZES", (1_000, 10_000, 100_000))
    )
    dashboard_sizes: tuple[int, ...] = field(
        default_factory=lambda: _env_ints("FIELDSYNC_BENCH_DASHBOARD_SIZES", (100_000, 1_000_000))
    )
    # Contended pushes of the same ids (issue 15 row 10 asks for 16 pushers for 60 s).
    contention_clients: int = field(default_factory=lambda: _env_int("FIELDSYNC_BENCH_CONTENTION_CLIENTS", 16))
    contention_seconds: int = field(default_factory=lambda: _env_int("FIELDSYNC_BENCH_CONTENTION_SECONDS", 60))
    contention_batch: int = field(default_factory=lambda: _env_int("FIELDSYNC_BENCH_CONTENTION_BATCH", 50))
    form_sizes: tuple[int, ...] = field(default_factory=lambda: _env_ints("FIELDSYNC_BENCH_FORM_SIZES", (0, 50, 200)))
    raw_rows: int = field(default_factory=lambda: _env_int("FIELDSYNC_BENCH_RAW_ROWS", 1000))
    webhook_events: int = field(default_factory=lambda: _env_int("FIELDSYNC_BENCH_WEBHOOK_EVENTS", 1000))
    # The acceptance scenario's size (issue 20 asks for 10,000); 0 skips it.
    webhook_chaos_events: int = field(default_factory=lambda: _env_int("FIELDSYNC_BENCH_WEBHOOK_CHAOS_EVENTS", 10_000))
    upload_largest: bool = field(default_factory=lambda: os.environ.get("FIELDSYNC_BENCH_UPLOAD_LARGEST", "1") != "0")
    admin_url: str = field(
        default_factory=lambda: os.environ.get(
            "FIELDSYNC_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        )
    )
    keep_database: bool = False

    def as_dict(self) -> dict[str, Any]:
        """Return the settings for the report (everything but the admin URL)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items() if k != "admin_url"}


@dataclass(frozen=True, slots=True)
class PublishedForm:
    """A bench form published on the server, with its database ids."""

    xml_form_id: str
    version: str
    form_id: int
    version_id: int
    extra_fields: int


@dataclass
class Context:
    """What every benchmark gets."""

    settings: Settings
    database: BenchDatabase
    server: Server
    accounts: Accounts
    routes: list[tuple[str, frozenset[str]]]
    shared: dict[str, Any] = field(default_factory=dict)
    forms: dict[str, PublishedForm] = field(default_factory=dict)
    _admin_token: str | None = None

    @property
    def base_url(self) -> str:
        """The server's base URL."""
        return self.server.base_url

    @property
    def project_id(self) -> int:
        """The bench project."""
        return self.accounts.project_id

    @property
    def collect_prefix(self) -> str:
        """The device-token server URL path ODK Collect is given."""
        return f"/v1/key/{self.accounts.device_token}/projects/{self.project_id}"

    def has_route(self, pattern: str, method: str = "GET") -> bool:
        """Tell whether the app routes ``method`` to a rule matching the regex ``pattern``."""
        regex = re.compile(pattern)
        return any(regex.search(rule) and method in methods for rule, methods in self.routes)

    def admin_headers(self) -> dict[str, str]:
        """Bearer headers of the bench admin (a session token, so no password hashing per request)."""
        if self._admin_token is None:
            response = requests.post(
                f"{self.base_url}/v1/sessions",
                json={"email": self.accounts.admin_username, "password": self.accounts.admin_password},
                timeout=30,
            )
            response.raise_for_status()
            self._admin_token = str(response.json()["token"])
        return {"Authorization": f"Bearer {self._admin_token}"}

    def device_headers(self) -> dict[str, str]:
        """Bearer headers of the bench device."""
        return {"Authorization": f"Bearer {self.accounts.device_token}"}

    def form_upload_available(self) -> bool:
        """Tell whether ``POST /v1/projects/<p>/forms`` exists."""
        return self.has_route(r"^/v1/projects/<[^>]+>/forms$", "POST")

    def upload_form(
        self, data: bytes, filename: str, *, publish: bool = True, timeout: float = 600
    ) -> requests.Response:
        """Upload a form file through the API (waits for an asynchronous conversion to finish)."""
        url = f"{self.base_url}/v1/projects/{self.project_id}/forms"
        response = requests.post(
            url,
            params={"publish": "true"} if publish else None,
            files={"file": (filename, data, "application/octet-stream")},
            headers=self.admin_headers(),
            timeout=timeout,
        )
        return wait_for_conversion(response, self.admin_headers(), timeout)

    def ensure_bench_form(self, extra_fields: int = 0, xml_form_id: str | None = None) -> PublishedForm:
        """Publish the bench form (with ``extra_fields`` extra questions) once; return its ids."""
        xml_form_id = xml_form_id or bench_form_id(extra_fields)
        if xml_form_id in self.forms:
            return self.forms[xml_form_id]
        if not self.form_upload_available():
            raise EndpointMissing("form upload (POST /v1/projects/<project>/forms) is not available yet")
        workbook = build_bench_xlsform(extra_fields, xml_form_id=xml_form_id)
        response = self.upload_form(workbook, f"{xml_form_id}.xlsx")
        if response.status_code not in (200, 201):
            raise RuntimeError(f"publishing the bench form failed: {response.status_code} {response.text[:500]}")
        with psycopg.connect(self.database.url) as conn:
            row = conn.execute(
                "SELECT f.id, f.current_version_id FROM forms f WHERE f.project_id = %s AND f.xml_form_id = %s",
                (self.project_id, xml_form_id),
            ).fetchone()
        if row is None or row[1] is None:
            raise RuntimeError(f"the bench form {xml_form_id} was uploaded but is not published")
        published = PublishedForm(xml_form_id, BENCH_FORM_VERSION, int(row[0]), int(row[1]), extra_fields)
        self.forms[xml_form_id] = published
        return published

    def device_token_id(self) -> int | None:
        """Return the database id of the bench device token."""
        with psycopg.connect(self.database.url) as conn:
            row = conn.execute(
                "SELECT id FROM access_tokens WHERE kind = 'device' AND project_id = %s ORDER BY id LIMIT 1",
                (self.project_id,),
            ).fetchone()
        return int(row[0]) if row else None


class EndpointMissing(Exception):
    """The endpoint a benchmark needs has not landed: the benchmark is reported as not available."""


def wait_for_conversion(response: requests.Response, headers: dict[str, str], timeout: float) -> requests.Response:
    """Follow a ``202 Accepted`` conversion (poll its ``Location``) until it is done; else return as is."""
    if response.status_code != 202:
        return response
    location = response.headers.get("Location")
    if not location:
        try:
            location = response.json().get("status_url") or response.json().get("url")
        except ValueError:
            location = None
    if not location:
        return response
    if location.startswith("/"):
        base = response.url.split("/v1/", 1)[0]
        location = base + location
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        polled = requests.get(location, headers=headers, timeout=60)
        if polled.status_code != 202:
            try:
                state = polled.json().get("state") or polled.json().get("status")
            except ValueError:
                state = None
            if state in ("pending", "running", "converting", "queued"):
                time.sleep(0.1)
                continue
            return polled
        time.sleep(0.1)
    return response


Benchmark = Callable[[Context], BenchmarkResult]


def run_benchmark(name: str, title: str, benchmark: Benchmark, context: Context) -> BenchmarkResult:
    """Run one benchmark; a missing endpoint becomes 'not available', a crash becomes an error result."""
    started = time.monotonic()
    try:
        result = benchmark(context)
    except EndpointMissing as missing:
        result = BenchmarkResult(name=name, title=title, available=False, reason=str(missing))
    except Exception as exc:  # a crash in one benchmark must not lose the others' figures
        # Paths relative to the checkout: the results are committed, and name no folder of one machine.
        detail = traceback.format_exc(limit=4).replace(f"{REPO_ROOT}{os.sep}", "")
        result = BenchmarkResult(
            name=name,
            title=title,
            available=False,
            reason=f"error: {type(exc).__name__}: {str(exc)[:400]}",
        )
        result.data["traceback"] = detail
        result.data["server_log_tail"] = context.server.log_tail(15)
    result.data["wall_seconds"] = round(time.monotonic() - started, 1)
    return result
