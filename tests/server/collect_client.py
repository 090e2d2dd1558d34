"""How ODK Collect uploads a submission, as its source does it (a model for tests, not a copy).

Read in getodk/collect (``OkHttpConnection.uploadSubmissionAndFiles`` and the uploader before it):
- Collect first sends ``HEAD`` to ``/submission`` and reads ``X-OpenRosa-Accept-Content-Length`` as a
  number of bytes (10,000,000 when the header is missing or unreadable).
- Every POST is multipart: ``xml_submission_file`` first (the whole XML, in every POST), then files.
- Files are added in order while the next one still fits: after adding a file, if another file follows
  and either the POST already has more than 100 files or (bytes so far, XML included) + (next file's
  size) exceeds the advertised length, the POST is closed with ``*isIncomplete*=yes``. So a POST has at
  least one file (when there are any), however large.
- The POSTs are sent in order; the first answer that is neither 201 nor 202 stops the upload, and the
  whole submission (every POST, from the first) is sent again at the next try.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_ACCEPT_CONTENT_LENGTH = 10_000_000
MAX_FILES_PER_POST = 100


@dataclass(frozen=True)
class CollectPost:
    """One POST of a submission: the files it carries and whether it is marked ``*isIncomplete*``."""

    files: tuple[tuple[str, bytes], ...]
    incomplete: bool


def accept_content_length(header: str | None) -> int:
    """The byte limit Collect takes from the HEAD answer."""
    try:
        return int(header) if header is not None else DEFAULT_ACCEPT_CONTENT_LENGTH
    except ValueError:
        return DEFAULT_ACCEPT_CONTENT_LENGTH


def split_posts(xml: bytes, files: list[tuple[str, bytes]], limit: int) -> list[CollectPost]:
    """The POSTs Collect sends for ``xml`` and ``files`` under the advertised ``limit``."""
    posts: list[CollectPost] = []
    index = 0
    first = True
    while index < len(files) or first:
        first = False
        start = index
        size = len(xml)
        incomplete = False
        while index < len(files):
            size += len(files[index][1])
            index += 1
            if index < len(files) and (index - start > MAX_FILES_PER_POST or size + len(files[index][1]) > limit):
                incomplete = True
                break
        posts.append(CollectPost(tuple(files[start:index]), incomplete))
    return posts
