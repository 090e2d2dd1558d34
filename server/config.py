"""Configuration: defaults, then the environment, then an explicit override (tests)."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent

ENV_KEYS = {
    "FIELDSYNC_DATABASE_URL": "DATABASE_URL",
    "FIELDSYNC_STORAGE_DIR": "STORAGE_DIR",
    "FIELDSYNC_SECRET_KEY": "SECRET_KEY",
    "FIELDSYNC_VAR_DIR": "VAR_DIR",
    "FIELDSYNC_MAX_SUBMISSION_BYTES": "MAX_SUBMISSION_BYTES",
    "FIELDSYNC_MAX_FORM_BYTES": "MAX_FORM_BYTES",
    "FIELDSYNC_MAX_PUSH_BYTES": "MAX_PUSH_BYTES",
    "FIELDSYNC_PUBLIC_URL": "PUBLIC_URL",
    "FIELDSYNC_LOG_REQUESTS": "LOG_REQUESTS",
    "FIELDSYNC_EXPORT_DIR": "EXPORT_DIR",
    "FIELDSYNC_MAX_FORM_ATTACHMENT_BYTES": "MAX_FORM_ATTACHMENT_BYTES",
    "FIELDSYNC_FORM_CONVERT_TIMEOUT": "FORM_CONVERT_TIMEOUT",
    "FIELDSYNC_METRICS_PUBLIC": "METRICS_PUBLIC",
    "FIELDSYNC_BLOB_STORE": "BLOB_STORE",
    "FIELDSYNC_S3_ENDPOINT_URL": "S3_ENDPOINT_URL",
    "FIELDSYNC_S3_REGION": "S3_REGION",
    "FIELDSYNC_S3_ACCESS_KEY_ID": "S3_ACCESS_KEY_ID",
    "FIELDSYNC_S3_SECRET_ACCESS_KEY": "S3_SECRET_ACCESS_KEY",
    "FIELDSYNC_PURGE_AFTER_DAYS": "PURGE_AFTER_DAYS",
    "FIELDSYNC_BLOB_GRACE_HOURS": "BLOB_GRACE_HOURS",
    "FIELDSYNC_JOB_RETENTION_DAYS": "JOB_RETENTION_DAYS",
    "FIELDSYNC_WEBHOOK_RETENTION_DAYS": "WEBHOOK_RETENTION_DAYS",
    "FIELDSYNC_TRUSTED_PROXIES": "TRUSTED_PROXIES",
    "FIELDSYNC_DIGEST_AUTH": "DIGEST_AUTH",
    "FIELDSYNC_FORM_CONVERT_WAIT": "FORM_CONVERT_WAIT",
    "FIELDSYNC_WEBHOOKS_ALLOW_PRIVATE": "WEBHOOKS_ALLOW_PRIVATE",
    "FIELDSYNC_WEBHOOKS_RETRY_FOR": "WEBHOOKS_RETRY_FOR",
    "FIELDSYNC_WEBHOOKS_TIMEOUT": "WEBHOOKS_TIMEOUT",
    "FIELDSYNC_WEBHOOKS_BACKOFF_BASE": "WEBHOOKS_BACKOFF_BASE",
    "FIELDSYNC_WEBHOOKS_BACKOFF_MAX": "WEBHOOKS_BACKOFF_MAX",
    "FIELDSYNC_WEBHOOKS_LEASE": "WEBHOOKS_LEASE",
    "FIELDSYNC_WEBHOOKS_POLL": "WEBHOOKS_POLL",
    "FIELDSYNC_KEEP_ALIVE": "KEEP_ALIVE",
    "FIELDSYNC_OPENROSA_ACCEPT_CONTENT_LENGTH": "OPENROSA_ACCEPT_CONTENT_LENGTH",
    "FIELDSYNC_CLIENT_SILENCE_TIMEOUT": "CLIENT_SILENCE_TIMEOUT",
    "FIELDSYNC_CONTROL_SOCKET": "CONTROL_SOCKET",
    "FIELDSYNC_FORMLIST_LISTEN": "FORMLIST_LISTEN",
    "FIELDSYNC_EXPORT_PROCESSES": "EXPORT_PROCESSES",
    "FIELDSYNC_EXPORT_PART_SUBMISSIONS": "EXPORT_PART_SUBMISSIONS",
}

INT_KEYS = {
    "MAX_SUBMISSION_BYTES",
    "MAX_FORM_BYTES",
    "MAX_PUSH_BYTES",
    "MAX_FORM_ATTACHMENT_BYTES",
    "TRUSTED_PROXIES",
    "OPENROSA_ACCEPT_CONTENT_LENGTH",
    "EXPORT_PROCESSES",
    "EXPORT_PART_SUBMISSIONS",
}
FLOAT_KEYS = {
    "FORM_CONVERT_TIMEOUT",
    "FORM_CONVERT_WAIT",
    "PURGE_AFTER_DAYS",
    "BLOB_GRACE_HOURS",
    "JOB_RETENTION_DAYS",
    "WEBHOOK_RETENTION_DAYS",
    "WEBHOOKS_RETRY_FOR",
    "WEBHOOKS_TIMEOUT",
    "WEBHOOKS_BACKOFF_BASE",
    "WEBHOOKS_BACKOFF_MAX",
    "WEBHOOKS_LEASE",
    "WEBHOOKS_POLL",
    "KEEP_ALIVE",
    "CLIENT_SILENCE_TIMEOUT",
}
BOOL_KEYS = {"LOG_REQUESTS", "METRICS_PUBLIC", "DIGEST_AUTH", "WEBHOOKS_ALLOW_PRIVATE", "FORMLIST_LISTEN"}
# The console's former proxy switch: "1" now means TRUSTED_PROXIES=1 (when that is not set itself).
DEPRECATED_PROXY_ENV = "FIELDSYNC_TRUST_PROXY_HEADERS"


def default_config(var_dir: Path) -> dict[str, Any]:
    """Return the built-in defaults, rooted at ``var_dir``."""
    return {
        "VAR_DIR": str(var_dir),
        "DATABASE_URL": f"sqlite:///{var_dir / 'fieldsync.sqlite3'}",
        "STORAGE_DIR": str(var_dir / "storage"),
        "EXPORT_DIR": str(var_dir / "exports"),
        "SECRET_KEY": None,
        # The largest OpenRosa POST (and tus upload) accepted.
        "MAX_SUBMISSION_BYTES": 50 * 1024 * 1024,
        # Advertised in X-OpenRosa-Accept-Content-Length. Collect puts the XML and then files in one POST
        # while the next file still fits under it (at least one file per POST), marks all POSTs but the
        # last `*isIncomplete*`, and on a failed POST retries the whole submission later. About one
        # phone photo: each POST carries one photo, so a cut link costs the resend of one photo.
        "OPENROSA_ACCEPT_CONTENT_LENGTH": 2 * 1024 * 1024,
        # gunicorn (`fieldsync serve`): idle connections stay open this long (phones, Node clients
        # and reverse proxies reuse connections for 60-75 s; gunicorn's 2 s loses their next POST).
        "KEEP_ALIVE": 65.0,
        # A request whose headers or body stop arriving for this many seconds ends, freeing its thread.
        "CLIENT_SILENCE_TIMEOUT": 30.0,
        # gunicorn's control socket: one per server (default under VAR_DIR); "off" disables it.
        "CONTROL_SOCKET": str(var_dir / "gunicorn.ctl"),
        "MAX_FORM_BYTES": 20 * 1024 * 1024,
        "MAX_PUSH_BYTES": 8 * 1024 * 1024,
        "PUBLIC_URL": None,
        "LOG_REQUESTS": True,
        # formList from memory while a LISTEN connection vouches for it (PostgreSQL; server.db.change_listener).
        # Off behind a transaction-pooling proxy (PgBouncer's transaction mode), which cannot hold a LISTEN.
        "FORMLIST_LISTEN": True,
        # A CSV zip export of more than one part (exports.parts; PostgreSQL only) is read and formatted by
        # this many forked helper processes, each on a core of its own; 1 formats it in the request's thread.
        "EXPORT_PROCESSES": min(2, os.cpu_count() or 1),
        # Submissions per part a helper reads (a form of no more is exported in the request's thread).
        "EXPORT_PART_SUBMISSIONS": 4000,
        # pyxform is quadratic on repeats (one corpus form takes 20+ s): convert in a child process
        # killed after this many seconds. Inline conversion is for tests only.
        "FORM_CONVERT_TIMEOUT": 60.0,
        "FORM_CONVERT_INLINE": False,
        # An upload whose conversion takes longer than this answers 202 with a job to poll
        # (GET /v1/projects/<p>/form-conversions/<id>); 0 answers 202 at once.
        "FORM_CONVERT_WAIT": 2.0,
        "MAX_FORM_ATTACHMENT_BYTES": 50 * 1024 * 1024,
        # /metrics without a credential: only for a bind that only the monitoring network reaches.
        "METRICS_PUBLIC": False,
        # Where blobs live: "" (a folder under STORAGE_DIR) or s3://bucket/prefix (see server/blobstore.py).
        "BLOB_STORE": "",
        "S3_ENDPOINT_URL": None,
        "S3_REGION": None,
        "S3_ACCESS_KEY_ID": None,
        "S3_SECRET_ACCESS_KEY": None,
        # Retention (fieldsync purge): soft-deleted submissions go after this many days (Central: 30);
        # a blob no row references is deleted once it is older than the grace period.
        "PURGE_AFTER_DAYS": 30.0,
        "BLOB_GRACE_HOURS": 24.0,
        # Finished XLSForm conversion jobs and delivered webhooks (with their attempts and spent events)
        # are deleted after this many days.
        "JOB_RETENTION_DAYS": 30.0,
        "WEBHOOK_RETENTION_DAYS": 30.0,
        # How many reverse proxies (nginx, a load balancer) stand in front: their X-Forwarded-For/-Proto/
        # -Host are then believed, so login throttling sees the client's address, not the proxy's.
        "TRUSTED_PROXIES": 0,
        # OpenRosa Digest (what ODK Collect uses over plain HTTP) needs each user's HA1 stored; off, only
        # Basic (over HTTPS) and device keys log in on OpenRosa routes. Never for admin accounts.
        "DIGEST_AUTH": True,
        # Webhooks: private, loopback and link-local targets are refused unless an admin allows them.
        "WEBHOOKS_ALLOW_PRIVATE": False,
        # Seconds a delivery is retried before it becomes a dead letter (offices lose power for days).
        "WEBHOOKS_RETRY_FOR": 3 * 24 * 3600.0,
        "WEBHOOKS_TIMEOUT": 10.0,
        "WEBHOOKS_BACKOFF_BASE": 5.0,
        "WEBHOOKS_BACKOFF_MAX": 3600.0,
        # A dispatcher's hold on a subscription's queue; a killed dispatcher's queue is taken over after it.
        "WEBHOOKS_LEASE": 60.0,
        "WEBHOOKS_POLL": 1.0,
    }


def load_config(override: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Build the configuration: defaults, environment variables, then ``override``."""
    var_dir = Path(os.environ.get("FIELDSYNC_VAR_DIR", PROJECT_ROOT / "var"))
    if override and "VAR_DIR" in override:
        var_dir = Path(override["VAR_DIR"])
    config = default_config(var_dir)
    for env_key, key in ENV_KEYS.items():
        value = os.environ.get(env_key)
        if value is not None and value != "":
            config[key] = int(value) if key in INT_KEYS else float(value) if key in FLOAT_KEYS else value
    for key in BOOL_KEYS:
        if isinstance(config[key], str):
            config[key] = config[key].lower() not in {"0", "false", "no", "off", ""}
    if override:
        config.update(override)
    _apply_deprecated_proxy_switch(config)
    if not config.get("SECRET_KEY"):
        config["SECRET_KEY"] = _stored_secret_key(Path(config["VAR_DIR"]))
    return config


def _apply_deprecated_proxy_switch(config: dict[str, Any]) -> None:
    legacy = config.pop("TRUST_PROXY_HEADERS", None)
    if legacy is None:
        legacy = os.environ.get(DEPRECATED_PROXY_ENV)
    if isinstance(legacy, str):
        legacy = legacy.lower() not in {"0", "false", "no", "off", ""}
    if legacy and not int(config.get("TRUSTED_PROXIES") or 0):
        logging.getLogger("fieldsync.config").warning(
            "%s is deprecated: set FIELDSYNC_TRUSTED_PROXIES to the number of proxies (read as 1)", DEPRECATED_PROXY_ENV
        )
        config["TRUSTED_PROXIES"] = 1


def _stored_secret_key(var_dir: Path) -> str:
    """Read the secret key kept under ``var_dir``, creating it on first start."""
    path = var_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    var_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    # Created with 0600 so other local users cannot read it.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key
