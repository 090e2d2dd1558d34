"""A real S3 endpoint on loopback for the S3 blob store's tests: moto's server mode, one per test session.

``s3_config`` gives each test a bucket of its own and the app settings that select it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from server.blobstore import S3Settings, s3_client


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """The URL of a moto S3 server on 127.0.0.1 (a free port)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_config(s3_endpoint: str) -> dict[str, Any]:
    """App settings selecting a new, empty bucket on the loopback endpoint."""
    bucket = f"fieldsync-{uuid.uuid4().hex[:12]}"
    config = {
        "BLOB_STORE": f"s3://{bucket}/site-a",
        "S3_ENDPOINT_URL": s3_endpoint,
        "S3_REGION": "us-east-1",
        "S3_ACCESS_KEY_ID": "testing",
        "S3_SECRET_ACCESS_KEY": "testing",
    }
    s3_client(settings_of(config)).create_bucket(Bucket=bucket)
    return config


def settings_of(config: dict[str, Any]) -> S3Settings:
    """The S3Settings an app would build from ``config``."""
    from server.blobstore import s3_settings

    settings = s3_settings(config)
    assert settings is not None
    return settings


def bucket_keys(config: dict[str, Any]) -> list[str]:
    """Every object key in the test's bucket."""
    settings = settings_of(config)
    client = s3_client(settings)
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=settings.bucket)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))
