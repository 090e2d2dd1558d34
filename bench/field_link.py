"""``python -m bench.field_link``: a coach's week over a faulty 2G link, Collect's way and Fieldsync's way.

The figure of issue 14 ("Field networks"): 40 cooperative diagnostics with 2 photos each go through the
loopback proxy of ``tests/server/faulty_link.py`` to a real ``fieldsync serve`` (SQLite, or PostgreSQL
with ``--database-url``), and the run reports what was stored and how many bytes crossed the link:

- cuts: every connection cut after 200 KiB went up, by resets and by clean closes, 1.5 MiB photos;
  Collect tries each submission ``--collect-tries`` times (its auto-send gives up, then retries later:
  a photo bigger than the distance between cuts never gets through one POST);
- 2G: 50 kbit/s up, 100 kbit/s down, 300 ms round trip (no cuts), on a smaller week (``--throttled``
  submissions, ``--throttled-photo`` bytes per photo) so that it ends in minutes: time and bytes of both ways.

The results replace the "Field networks" section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REPORT = REPO / "docs" / "benchmarks.md"
SECTION = "## Field networks (faulty links)"

sys.path.insert(0, str(REPO))

from tests.server.faulty_link import FaultyLink, LinkFaults  # noqa: E402
from tests.server.field_phones import CollectPhone, FieldsyncPhone  # noqa: E402
from tests.server.live_server import LiveServer, live_server  # noqa: E402
from tests.server.test_submissions_support import photo_submission  # noqa: E402

Week = list[tuple[str, bytes, list[tuple[str, bytes]]]]


@dataclass
class Figure:
    """One run: the way, the link, what was stored and what crossed."""

    way: str
    link: str
    total: int
    submissions: int
    with_xml: int
    photos: int
    photos_total: int
    wire: int
    payload: int
    cuts: int
    server_errors: int
    seconds: float


def week(seed: str, count: int, photo_bytes: int) -> Week:
    """``count`` submissions with two incompressible photos of ``photo_bytes`` each."""
    rng = random.Random(seed)
    result: Week = []
    for index in range(count):
        photos = [(f"{seed}-{index}-{side}.jpg", rng.randbytes(photo_bytes)) for side in ("front", "back")]
        instance_id = f"uuid:{seed}-{index}"
        result.append((instance_id, photo_submission(instance_id, [n for n, _ in photos]), photos))
    return result


def stored(server: LiveServer, data: Week) -> tuple[int, int, int]:
    """(submissions, with their XML, photos byte-identical) of ``data`` in the server's store."""
    from sqlalchemy import create_engine, text

    ids = {instance_id for instance_id, _, _ in data}
    engine = create_engine(server.database_url)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT instance_id, xml FROM submission_versions")).all()
        versions = {i: x for i, x in rows if i in ids}
        query = text("SELECT name, blob_sha256 FROM submission_attachments WHERE blob_sha256 IS NOT NULL")
        present = {name: sha for name, sha in connection.execute(query).all()}
    engine.dispose()
    with_xml = sum(1 for i, xml, _ in data if bytes(versions.get(i) or b"") == xml)
    photos = 0
    for _, _, files in data:
        for name, content in files:
            sha = present.get(name)
            blob = next(server.storage_dir.rglob(sha), None) if sha else None
            photos += int(blob is not None and blob.read_bytes() == content)
    return len(versions), with_xml, photos


def run(server: LiveServer, way: str, link_name: str, faults: LinkFaults, data: Week, collect_tries: int) -> Figure:
    """Send ``data`` one way over a link with ``faults``."""
    payload = sum(len(xml) + sum(len(c) for _, c in files) for _, xml, files in data)
    started = time.monotonic()
    with FaultyLink((server.host, server.port), faults) as link:
        if way == "Collect":
            phone: CollectPhone | FieldsyncPhone = CollectPhone(*link.address, prefix=server.collect_prefix)
            assert isinstance(phone, CollectPhone)
            for _, xml, photos in data:
                for _ in range(collect_tries):
                    phone.tries += 1
                    if phone._try(xml, photos):
                        break
        else:
            phone = FieldsyncPhone(*link.address, token=server.token, project_id=server.project_id)
            assert isinstance(phone, FieldsyncPhone)
            phone.sync(data)
        seconds = time.monotonic() - started
        wire, cuts = link.bytes_up + link.bytes_down, link.cuts
    submissions, with_xml, photos = stored(server, data)
    photos_total = sum(len(files) for _, _, files in data)
    return Figure(
        way,
        link_name,
        len(data),
        submissions,
        with_xml,
        photos,
        photos_total,
        wire,
        payload,
        cuts,
        phone.server_errors(),
        seconds,
    )


def render(figures: list[Figure], args: argparse.Namespace) -> str:
    """The Markdown section."""
    lines = [
        f"{SECTION}, {args.store}",
        "",
        f"`python -m bench.field_link` ({args.store}): {args.submissions} submissions x 2 photos of "
        f"{args.photo // 1024} KiB through a loopback proxy to `fieldsync serve`; Collect's way (HEAD, the "
        f"advertised split, {args.collect_tries} tries per submission, each from the first POST) and "
        "Fieldsync's protocol (blobs/missing, tus resumed from HEAD, pushes of 10). "
        f"2G: {args.submissions_throttled} submissions x 2 photos of {args.throttled_photo // 1024} KiB, "
        "50 kbit/s up, 100 kbit/s down, 300 ms round trip.",
        "",
        "| way | link | stored (XML) | photos stored | bytes on the wire / payload | cuts | 5xx | time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in figures:
        lines.append(
            f"| {f.way} | {f.link} | {f.submissions} ({f.with_xml}) / {f.total} "
            f"| {f.photos} / {f.photos_total} | {f.wire / f.payload:.2f}x ({f.wire / 1e6:.1f} MB) "
            f"| {f.cuts} | {f.server_errors} | {f.seconds:.0f} s |"
        )
    lines += [
        "",
        "Collect keeps each POST under the advertised length (2 MiB: one photo per POST) and resends a failed",
        "submission from its first POST, so a photo larger than the distance between two cuts never arrives;",
        "what does arrive is kept (the XML of every submission, every photo smaller than that distance).",
        "Before this work the same Collect run stored 0 / 40 (a cut POST kept nothing, not even its XML), and",
        "Fieldsync's protocol crossed 4.15x (resets) and 1.50x (clean closes) of the payload, with 500s.",
        "The tests run the same scenarios scaled down (40 KB photos, a cut every 50 KB, both stores) and assert",
        "the counts and the 1.2x bound. Times are wall-clock on a shared 2-core machine, loopback; the 2G",
        "latency is applied per forwarded chunk (about 300 ms round trip), so the 2G times are approximate.",
        "",
    ]
    return "\n".join(lines)


def write_section(text: str) -> None:
    """Replace (or append) the section of this store in ``docs/benchmarks.md``."""
    page = REPORT.read_text() if REPORT.exists() else "# Benchmarks\n"
    heading = text.split("\n", 1)[0]
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    page = pattern.sub(text + "\n", page) if pattern.search(page) else page.rstrip("\n") + "\n\n" + text + "\n"
    REPORT.write_text(page)


@contextmanager
def _database(server_url: str | None) -> Iterator[str | None]:
    """A fresh, migrated schema of the PostgreSQL server at ``server_url`` (None: SQLite, made by live_server)."""
    if server_url is None:
        yield None
        return
    from server.db.engine import make_engine
    from server.db.migrate import upgrade_to_head
    from tests.conftest import create_postgres_schema, drop_postgres_schema

    schema, url = create_postgres_schema(server_url)
    try:
        engine = make_engine(url)
        upgrade_to_head(engine)
        engine.dispose()
        yield url
    finally:
        drop_postgres_schema(server_url, schema)


def main(argv: list[str]) -> None:
    """Run the figure and write it into the report."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--submissions", type=int, default=40)
    parser.add_argument("--photo", type=int, default=1536 * 1024)
    parser.add_argument("--cut-every", type=int, default=200 * 1024)
    parser.add_argument("--collect-tries", type=int, default=3)
    parser.add_argument("--submissions-throttled", type=int, default=2)
    parser.add_argument("--throttled-photo", type=int, default=100 * 1024)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--no-throttle", action="store_true")
    args = parser.parse_args(argv)
    args.store = "PostgreSQL" if args.database_url else "SQLite"
    figures = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        _database(args.database_url) as url,
        live_server(Path(tmp), url) as server,
    ):
        for mode in ("reset", "close"):
            cuts = LinkFaults(cut_every=args.cut_every, cut_mode=mode)
            name = f"cut every {args.cut_every // 1024} KiB ({'resets' if mode == 'reset' else 'clean closes'})"
            for way in ("Collect", "Fieldsync"):
                data = week(f"{way}-{mode}", args.submissions, args.photo)
                figures.append(run(server, way, name, cuts, data, args.collect_tries))
                print(figures[-1], flush=True)
        if not args.no_throttle:
            g2 = LinkFaults(up_bps=50_000 / 8, down_bps=100_000 / 8, latency=0.15)
            for way in ("Collect", "Fieldsync"):
                data = week(f"{way}-2g", args.submissions_throttled, args.throttled_photo)
                figures.append(run(server, way, "2G throttle", g2, data, args.collect_tries))
                print(figures[-1], flush=True)
    write_section(render(figures, args))


if __name__ == "__main__":
    main(sys.argv[1:])
