"""A coach's week over a link that cuts every connection (issue 14 "Field networks" acceptance, scaled down).

16 submissions with 2 photos each go through :class:`FaultyLink`, which cuts every connection after
50 KB went up (40 KB photos: each fits between two cuts; the full-size figure, 1.5 MiB photos and
200 KiB cuts, is ``bench/field_link.py``). Counts and bytes, never times.

Rules:
- FL1 Collect's way (HEAD, the advertised split, every failure resent from the first POST): all
  submissions stored with their XML and every photo (all are smaller than the distance between cuts),
  none duplicated, no 5xx.
- FL2 Fieldsync's protocol (blobs/missing, tus resumed from HEAD, pushes), with resets and with clean
  closes: all complete, every photo byte-identical, at most 1.2 x the payload on the wire, no 5xx.
Both rules on SQLite, PostgreSQL, and SQLite with the blobs (and the tus partials) in an S3 bucket.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from server.blobstore import blob_store, s3_client
from tests.conftest import POSTGRES_URL, fresh_database_url
from tests.server.faulty_link import FaultyLink, LinkFaults
from tests.server.field_phones import CollectPhone, FieldsyncPhone
from tests.server.live_server import LiveServer, live_server
from tests.server.s3_fixtures import settings_of
from tests.server.test_submissions_support import photo_submission

SUBMISSIONS = 10  # the bench sends a coach's week (40) at full size; the rules hold at any count
PHOTO_BYTES = 40_000
CUT_EVERY = 50_000
# About one photo, as the 2 MiB default is for 1.5 MiB photos: Collect sends one photo per POST.
ADVERTISED = 50_000

STORES = [
    "sqlite",
    pytest.param("postgresql", marks=pytest.mark.skipif(not POSTGRES_URL, reason="no PostgreSQL")),
    "sqlite-s3",
]
_BLOB_CONFIG: dict[int, dict[str, Any]] = {}  # server port -> the blob store settings it runs with


def _bucket(endpoint: str) -> dict[str, Any]:
    bucket = f"fieldsync-{uuid.uuid4().hex[:12]}"
    config = {
        "BLOB_STORE": f"s3://{bucket}/field",
        "S3_ENDPOINT_URL": endpoint,
        "S3_REGION": "us-east-1",
        "S3_ACCESS_KEY_ID": "testing",
        "S3_SECRET_ACCESS_KEY": "testing",
    }
    s3_client(settings_of(config)).create_bucket(Bucket=bucket)
    return config


@pytest.fixture(scope="module", params=STORES)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One ``fieldsync serve`` per store for the scenarios of this module."""
    tmp = tmp_path_factory.mktemp(f"field-{request.param}")
    url, cleanup = (None, None) if request.param != "postgresql" else fresh_database_url("postgresql", tmp)
    blobs = _bucket(request.getfixturevalue("s3_endpoint")) if request.param == "sqlite-s3" else {}
    try:
        with live_server(
            tmp, url, openrosa_accept_content_length=str(ADVERTISED), **{k.lower(): v for k, v in blobs.items()}
        ) as running:
            _BLOB_CONFIG[running.port] = blobs
            yield running
    finally:
        if cleanup is not None:
            cleanup()


def _stored_bytes(server: LiveServer, sha: str) -> bytes | None:
    store = blob_store(server.storage_dir, _BLOB_CONFIG.get(server.port) or None)
    return b"".join(store.iter_bytes(sha)) if store.has_file(sha) else None


def _week(seed: str) -> list[tuple[str, bytes, list[tuple[str, bytes]]]]:
    """A coach's week: (instance id, XML, photos); the photos are incompressible and unique per scenario."""
    rng = random.Random(seed)
    week = []
    for index in range(SUBMISSIONS):
        photos = [(f"{seed}-{index}-{side}.jpg", rng.randbytes(PHOTO_BYTES)) for side in ("front", "back")]
        instance_id = f"uuid:{seed}-{index}"
        week.append((instance_id, photo_submission(instance_id, [name for name, _ in photos]), photos))
    return week


def _stored(server: LiveServer, week: list[tuple[str, bytes, list[tuple[str, bytes]]]]) -> dict[str, object]:
    """What the store holds of ``week``: submissions, versions, XML kept, photos present and byte-identical."""
    ids = [instance_id for instance_id, _, _ in week]
    engine = create_engine(server.database_url)
    try:
        with engine.connect() as connection:
            versions = connection.execute(text("SELECT instance_id, xml FROM submission_versions")).all()
            attachments = connection.execute(
                text("SELECT name, blob_sha256 FROM submission_attachments WHERE blob_sha256 IS NOT NULL")
            ).all()
    finally:
        engine.dispose()
    mine = [(i, xml) for i, xml in versions if i in ids]
    xml_of = dict(mine)
    present = dict(attachments)
    photos = [(name, content) for _, _, files in week for name, content in files]
    identical = 0
    for name, content in photos:
        sha = present.get(name)
        identical += int(
            sha is not None and _stored_bytes(server, sha) == content and sha == hashlib.sha256(content).hexdigest()
        )
    return {
        "versions": len(mine),
        "distinct": len(xml_of),
        "xml_kept": sum(1 for instance_id, xml, _ in week if bytes(xml_of.get(instance_id) or b"") == xml),
        "photos": identical,
    }


def _payload(week: list[tuple[str, bytes, list[tuple[str, bytes]]]]) -> int:
    return sum(len(xml) + sum(len(content) for _, content in files) for _, xml, files in week)


@pytest.mark.one_store_per_run
def test_collect_over_a_cut_link_keeps_every_xml_and_every_photo_smaller_than_the_cuts(server: LiveServer) -> None:
    week = _week(f"collect-{Path(server.database_url).name}")
    with FaultyLink((server.host, server.port), LinkFaults(cut_every=CUT_EVERY, cut_mode="reset")) as link:
        phone = CollectPhone(*link.address, prefix=server.collect_prefix)
        for _, xml, photos in week:
            phone.send(xml, photos)
    assert _stored(server, week) == {
        "versions": SUBMISSIONS,
        "distinct": SUBMISSIONS,
        "xml_kept": SUBMISSIONS,
        "photos": 2 * SUBMISSIONS,
    }
    assert phone.server_errors() == 0, phone.statuses


@pytest.mark.one_store_per_run
@pytest.mark.parametrize("cut_mode", ["reset", "close"], ids=["resets", "clean-closes"])
def test_fieldsync_protocol_over_a_cut_link_is_complete_and_cheap(server: LiveServer, cut_mode: str) -> None:
    week = _week(f"fieldsync-{cut_mode}-{Path(server.database_url).name}")
    with FaultyLink((server.host, server.port), LinkFaults(cut_every=CUT_EVERY, cut_mode=cut_mode)) as link:
        phone = FieldsyncPhone(*link.address, token=server.token, project_id=server.project_id)
        phone.sync(week)
    assert _stored(server, week) == {
        "versions": SUBMISSIONS,
        "distinct": SUBMISSIONS,
        "xml_kept": SUBMISSIONS,
        "photos": 2 * SUBMISSIONS,
    }
    assert set(phone.results) <= {"created", "duplicate"} and sum(phone.results.values()) == SUBMISSIONS
    assert phone.server_errors() == 0, phone.statuses
    assert link.cuts > 0
    wire = link.bytes_up + link.bytes_down
    assert wire <= 1.2 * _payload(week), (wire, _payload(week), link.cuts, phone.statuses)
