"""Form uploads that may outlast a request: converted in a warm child process, answered inline or as a job.

Rules (issue 13):
- an upload's conversion starts at once in this server process (``form_conversion.warm_converters``);
  when it ends within ``FORM_CONVERT_WAIT`` seconds the request stores the version and answers as it
  always did (201/200, or pyxform's 400); otherwise the request records a conversion job (``queued``)
  and answers ``202`` with it, and a thread of this process claims the job (``running``), waits for the
  conversion and stores the version and the job's outcome in ONE transaction (``done``/``failed``);
- a job's state lives in the database, so a poll reaching any process or host answers it; every move is
  a compare-and-set, so a job is finished once: a job whose process died (never claimed within
  ``LOST_AFTER_SECONDS``, or running past its time limit plus that grace) is failed by the poll that
  finds it, and the late process, if any, then stores nothing;
- ``FORM_CONVERT_INLINE`` (the CLI, the demo, most tests) converts in the request, without a job.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from flask import Flask, current_app
from sqlalchemy.orm import Session

from forms.errors import FormError
from forms.identity import clean_form_id, form_id_from_header
from server.blobstore import BlobStore
from server.db.base import utcnow
from server.db.models.forms import FormConversionJob
from server.db.queries import forms as q
from server.db.transaction import transaction
from server.errors import ApiError, not_found
from server.services import forms as svc
from server.services.form_conversion import ConversionTimeout, TimedConversion, convert_with_limit

log = logging.getLogger("fieldsync.forms")

# A queued job nobody claimed for this long, or a running one this long past its time limit, was lost
# with the process that held it (restarted, killed for memory).
LOST_AFTER_SECONDS = 30.0
FINISHED_STATES = ("done", "failed")
Outcome = TimedConversion | FormError | ConversionTimeout


@dataclass(frozen=True)
class ConversionJobInfo:
    """A conversion job as a poll answers it: state, times, and the result or the error."""

    id: int
    project_id: int
    state: str
    filename: str
    publish: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    elapsed_seconds: float
    result: dict[str, Any] | None
    error: dict[str, Any] | None


class _Conversion:
    """A conversion running in a thread of this process; ``wait`` says whether it has ended."""

    def __init__(self, convert: Callable[[], TimedConversion]) -> None:
        self._done = threading.Event()
        self.outcome: Outcome | None = None
        threading.Thread(target=self._run, args=(convert,), daemon=True, name="fieldsync-form-conversion").start()

    def _run(self, convert: Callable[[], TimedConversion]) -> None:
        try:
            self.outcome = convert()
        except (FormError, ConversionTimeout) as exc:
            self.outcome = exc
        except Exception as exc:  # a bug or a broken pipe: still an answer, never a thread dying silently
            log.exception("form conversion failed unexpectedly")
            self.outcome = FormError("conversion_failed", f"{type(exc).__name__}: {exc}")
        finally:
            self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds (None: until it ends); tell whether it has ended."""
        return self._done.wait(timeout)


def _converted(outcome: Outcome | None) -> tuple[Any, float]:
    if isinstance(outcome, FormError | ConversionTimeout):
        raise svc.conversion_error_to_api(outcome)
    assert outcome is not None
    return svc.converted_or_raise(outcome)


def fallback_form_id(form_id: str | None, form_id_header: str | None) -> str | None:
    """Return the caller's id for a workbook without one: ``?form_id=``, else the percent-encoded header."""
    try:
        if form_id is not None:
            return clean_form_id(form_id, source="form id fallback")
        if form_id_header:
            return form_id_from_header(form_id_header)
    except FormError as err:
        raise svc.form_error_to_api(err) from None
    except UnicodeDecodeError:
        raise ApiError(
            400,
            "invalid_form_id",
            "The X-XlsForm-FormId-Fallback header is not percent-encoded UTF-8.",
            {"form_id": unquote(form_id_header or "", errors="replace")},
        ) from None
    return None


def upload_form(
    session: Session,
    project_id: int,
    data: bytes,
    filename: str,
    *,
    publish: bool,
    actor: str,
    form_id: str | None = None,
    form_id_header: str | None = None,
    settings: svc.UploadSettings | None = None,
    blobs: BlobStore | None = None,
) -> svc.FormVersionResult | ConversionJobInfo:
    """Upload a form: the stored version when it converts within the wait, else the job to poll."""
    settings = settings or svc.upload_settings()
    fallback = fallback_form_id(form_id, form_id_header)
    svc.check_form_upload(data, settings)
    if settings.convert_inline:
        return svc.create_form_version(
            session,
            project_id,
            data,
            filename,
            publish=publish,
            actor=actor,
            settings=settings,
            blobs=blobs,
            default_form_id=fallback,
        )
    received = utcnow()  # a job's elapsed time counts from here, the wait included
    conversion = _Conversion(
        lambda: convert_with_limit(
            data, filename, timeout=settings.convert_timeout, inline=False, default_form_id=fallback
        )
    )
    if settings.convert_wait > 0 and conversion.wait(settings.convert_wait):
        converted, seconds = _converted(conversion.outcome)
        with transaction(session):
            return svc.store_version_rows(
                session, project_id, converted, data, filename, seconds, publish=publish, actor=actor, blobs=blobs
            )
    with transaction(session):
        job = FormConversionJob(
            project_id=project_id,
            state="queued",
            filename=filename[:255],
            publish=publish,
            created_by=actor,
            created_at=received,
            timeout_seconds=settings.convert_timeout,
        )
        session.add(job)
        session.flush()
        info = _info(job, utcnow())
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    threading.Thread(
        target=_run_job,
        args=(app, job.id, conversion, project_id, data, filename, publish, actor, blobs),
        daemon=True,
        name=f"fieldsync-form-job-{job.id}",
    ).start()
    return info


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:200]


def _run_job(
    app: Flask,
    job_id: int,
    conversion: _Conversion,
    project_id: int,
    data: bytes,
    filename: str,
    publish: bool,
    actor: str,
    blobs: BlobStore | None,
) -> None:
    """Claim the job, wait for its conversion, store the version and the outcome together."""
    from server.store import get_store

    worker = _worker_name()
    with app.app_context():
        session = get_store(app).sessions()
        try:
            with transaction(session):
                if not q.claim_job(session, job_id, worker, utcnow()):
                    return  # failed as lost by a poll meanwhile: nothing to do
            conversion.wait()
            try:
                with transaction(session):
                    converted, seconds = _converted(conversion.outcome)
                    result = svc.store_version_rows(
                        session,
                        project_id,
                        converted,
                        data,
                        filename,
                        seconds,
                        publish=publish,
                        actor=actor,
                        blobs=blobs,
                    )
                    if not q.finish_job(session, job_id, worker, utcnow(), result=_plain(result)):
                        raise _JobTaken  # rolls the version back: the job was failed as lost
            except ApiError as exc:
                _fail(session, job_id, worker, {"status": exc.status, **exc.to_dict()})
            except _JobTaken:
                log.warning("conversion job %s was failed as lost before it finished", job_id)
            except Exception as exc:
                log.exception("storing the form of conversion job %s failed", job_id)
                _fail(session, job_id, worker, _internal_error(exc))
        finally:
            session.close()


class _JobTaken(Exception):
    """The job left ``running`` under this worker before it could be finished."""


def _fail(session: Session, job_id: int, worker: str, error: dict[str, Any]) -> None:
    with transaction(session):
        q.finish_job(session, job_id, worker, utcnow(), error=error)


def _internal_error(exc: Exception) -> dict[str, Any]:
    message = "The form converted but could not be stored; upload it again."
    details = {"exception": type(exc).__name__}
    return {"status": 500, **ApiError(500, "conversion_store_failed", message, details).to_dict()}


def _plain(result: svc.FormVersionResult) -> dict[str, Any]:
    plain = dataclasses.asdict(result)
    return {key: list(value) if isinstance(value, tuple) else value for key, value in plain.items()}


def _info(job: FormConversionJob, now: datetime) -> ConversionJobInfo:
    end = job.finished_at or now
    return ConversionJobInfo(
        id=job.id,
        project_id=job.project_id,
        state=job.state,
        filename=job.filename,
        publish=job.publish,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        elapsed_seconds=round(max((end - job.created_at).total_seconds(), 0.0), 3),
        result=job.result,
        error=job.error,
    )


def _lost(job: FormConversionJob, now: datetime) -> bool:
    if job.state == "queued":
        return (now - job.created_at).total_seconds() > LOST_AFTER_SECONDS
    if job.state == "running" and job.started_at is not None:
        return (now - job.started_at).total_seconds() > job.timeout_seconds + LOST_AFTER_SECONDS
    return False


LOST_ERROR = {
    "status": 503,
    **ApiError(
        503,
        "conversion_lost",
        "The server process converting this form stopped before it finished (it was restarted or ran "
        "out of memory). Upload the form again.",
    ).to_dict(),
}


def conversion_job(session: Session, project_id: int, job_id: int) -> ConversionJobInfo:
    """Return a conversion job of the project (404 otherwise); a job lost with its process is failed now."""
    with transaction(session):
        job = q.get_job(session, project_id, job_id)
        if job is None:
            raise not_found("conversion job", job_id=job_id)
        now = utcnow()
        if _lost(job, now):
            # Whoever wins the compare-and-set decides; the others read what it decided.
            q.fail_job(
                session,
                job.id,
                job.state,
                {**LOST_ERROR, "details": {**LOST_ERROR["details"], "claimed_by": job.claimed_by}},
                now,
            )
            session.refresh(job)
        return _info(job, utcnow())
