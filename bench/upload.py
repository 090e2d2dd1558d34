"""XLSForm upload + convert: the bench form (small), a large corpus form and the corpus's largest one.

Each round uploads the file with ``?publish=true`` into a project of its own (so the identical bytes
are a new form each time, never an idempotent no-op) and waits until the version is published.
Raw reference: ``forms.convert.convert_upload`` on the same bytes in the bench process (pyxform's
conversion plus our XForm parsing, without HTTP, storage or transactions). The largest form takes
tens of seconds in pyxform, so it gets a single round (``--upload-largest 0`` skips it).
"""

from __future__ import annotations

import time
from pathlib import Path

import requests

from bench.harness import Context, EndpointMissing, wait_for_conversion
from bench.payloads import build_bench_xlsform
from bench.results import BenchmarkResult, Figure, Reference
from bench.stats import spread

NAME = "upload"
TITLE = "XLSForm upload + convert"
CORPUS = Path(__file__).resolve().parent.parent / ".." / "shared" / "corpus" / "forms"
LARGE = "formshare/good_size.xlsx"  # 512 questions, 53 groups, 12 repeats
LARGEST = "formshare/vendor_survey_20230910.xlsx"  # 1,078 questions, 2,235 rows: pyxform's slowest


def _new_project(context: Context, label: str) -> int:
    response = requests.post(
        f"{context.base_url}/v1/projects", json={"name": f"bench upload {label}"}, headers=context.admin_headers(),
        timeout=30,
    )  # fmt: skip
    response.raise_for_status()
    return int(response.json()["id"])


def _upload(context: Context, project_id: int, data: bytes, filename: str) -> float:
    started = time.perf_counter()
    response = requests.post(
        f"{context.base_url}/v1/projects/{project_id}/forms",
        # Forms without settings/form_id get their file stem, as pyxform does for a path.
        params={"publish": "true", "formId": Path(filename).stem},
        files={"file": (filename, data, "application/octet-stream")},
        headers=context.admin_headers(),
        timeout=900,
    )
    response = wait_for_conversion(response, context.admin_headers(), 900)
    elapsed = time.perf_counter() - started
    if response.status_code == 200 and response.json().get("state") == "failed":  # a 202 job that failed
        raise RuntimeError(f"converting {filename} failed: {response.json().get('error')}")
    if response.status_code not in (200, 201):
        raise RuntimeError(f"uploading {filename} answered {response.status_code}: {response.text[:300]}")
    return elapsed


def _convert_in_process(data: bytes, filename: str) -> float:
    from forms.convert import convert_upload

    started = time.perf_counter()
    convert_upload(data, filename, default_form_id=Path(filename).stem)
    return time.perf_counter() - started


def run(context: Context) -> BenchmarkResult:
    """Time form uploads of three sizes against in-process conversion."""
    if not context.form_upload_available():
        raise EndpointMissing("form upload (POST /v1/projects/<project>/forms) is not available yet")
    settings = context.settings
    cases: list[tuple[str, str, bytes, int]] = [
        ("small: bench form (22 questions, 1 repeat)", "bench.xlsx", build_bench_xlsform(), settings.rounds)
    ]
    questions = {"bench.xlsx": 22, Path(LARGE).name: 512, Path(LARGEST).name: 1078}
    missing = []
    for label, relative, rounds in (
        ("large: good_size.xlsx (512 questions, 12 repeats)", LARGE, settings.rounds),
        ("largest: vendor_survey_20230910.xlsx (1,078 questions)", LARGEST, 1 if settings.upload_largest else 0),
    ):
        path = CORPUS / relative
        if rounds == 0:
            missing.append(f"{label}: skipped (--upload-largest 0)")
        elif path.is_file():
            cases.append((label, path.name, path.read_bytes(), rounds))
        else:
            missing.append(f"{label}: not measured, the corpus file {path} is absent")

    result = BenchmarkResult(NAME, TITLE)
    result.data["seconds"] = {}
    for index, (label, filename, data, rounds) in enumerate(cases):
        # Warm-up on the small form only: it loads pyxform in every worker; big forms are their own warm-up.
        if index == 0:
            for warm in range(max(1, settings.warmup)):
                _upload(context, _new_project(context, f"warm{warm}"), data, filename)
        try:
            server = [_upload(context, _new_project(context, f"{index}-{r}"), data, filename) for r in range(rounds)]
        except RuntimeError as failure:
            # A time-limited conversion may refuse the largest form on a loaded machine: report, go on.
            result.notes.append(f"{label}: the upload failed — {failure}")
            continue
        local = [_convert_in_process(data, filename) for _ in range(min(rounds, 1 if index else rounds))]
        result.figures.append(
            Figure(
                name=label,
                unit="s",
                spread=spread(server),
                reference=Reference("convert_upload in-process", spread(local).median, "s"),
                extra={"bytes": len(data)},
            )
        )
        result.data["seconds"][filename] = {
            "server": server,
            "in_process": local,
            "bytes": len(data),
            "questions": questions.get(filename),
        }
    result.notes.extend(missing)
    result.notes.append(
        "Seconds per upload (lower is better); the ratio is server time / in-process conversion time, so "
        "1.0× means HTTP, storage and publishing cost nothing next to pyxform."
    )
    return result
