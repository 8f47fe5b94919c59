"""Dashboard enrichment pages: upload a CSV, estimate, sample, start, watch, resume, download.

Jobs are the enrichment service's (``service.enrichment``); a job started or
resumed here is handed to the API's background job worker of the same book
(one worker per process), or, without the API's enrichment routes, run in a
thread; the service lets exactly one runner claim a job either way. The job
page polls a small JSON status endpoint with a few lines of JavaScript; with
scripts off, a ``<noscript>`` meta refresh reloads it instead.

A member sees and steers only the jobs it started; any other job is "not
found" (404) on every page and form, as a job that does not exist. Admins see
every job of the team.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.datastructures import FormData, UploadFile
from starlette.responses import JSONResponse, Response

from creditbook.domain.errors import InvalidInput
from creditbook.domain.limits import MAX_JOB_LEADS, parse_whole
from creditbook.entrypoints.web.app import (
    PREFIX,
    WebUser,
    checked_form,
    dashboard_of,
    redirect,
    render,
    session_of,
    signed_in,
)
from creditbook.entrypoints.web.limits import ExportLimit

router = APIRouter()
UserDep = Annotated[WebUser, Depends(signed_in)]
FormDep = Annotated[FormData, Depends(checked_form)]
DEFAULT_SAMPLE = 10
REASONS = {
    "insufficient_credits": "the team ran out of credits",
    "credit_limit": "the job reached its credit limit",
    "member_cap_exceeded": "the member who started it reached their monthly cap",
    "key_cap_exceeded": "the API key it was started with reached its monthly cap",
    "interrupted": "the service stopped while the job ran",
    "estimate_only": "it is waiting for you to start it after the estimate",
}
log = logging.getLogger("creditbook.web")


def _service(request: Request) -> Any:
    service = dashboard_of(request).enrichment
    if service is None:
        raise InvalidInput("enrichment is not available: the enrichment service is not installed")
    return service


def _run_in_background(service: Any, team_id: str, job_id: str) -> None:
    """Hand the job to the API's job worker of this book, or run it in a thread."""
    from creditbook.service.enrichment import JobStateConflict

    try:
        from creditbook.entrypoints.api.routes_enrichment import worker_for
    except ImportError:
        pass
    else:
        worker_for(service.kernel).submit(team_id, job_id)
        return

    def work() -> None:
        # Another runner (the API's worker) may have claimed the job first: fine.
        with contextlib.suppress(JobStateConflict):
            try:
                service.run_sync(team_id, job_id)
            except JobStateConflict:
                raise
            except Exception:
                log.exception("enrichment job %s failed in the dashboard runner", job_id)

    threading.Thread(target=work, name=f"dashboard-job-{job_id}", daemon=True).start()


def _started_by(user: WebUser) -> str | None:
    """The member whose jobs alone the user sees; None for an admin (every job)."""
    return None if user.is_admin else user.member.id


def _job_for(request: Request, user: WebUser, job_id: str) -> Any:
    return _service(request).get_job(user.team.id, job_id, started_by=_started_by(user))


def _status(job: Any) -> dict[str, Any]:
    return {
        "id": job.id,
        "status": job.status,
        "pause_reason": job.pause_reason,
        "total": job.total,
        "processed": job.processed,
        "found": job.found,
        "errors": job.errors_count,
        "credits_spent": job.credits_spent,
        "credits_needed": job.credits_needed,
        "percent": round(100 * job.processed / job.total) if job.total else 100,
        "done": job.done,
    }


@router.get("/enrichment")
def jobs_page(request: Request, user: UserDep) -> Response:
    service = dashboard_of(request).enrichment
    jobs: list[Any] = []
    features: list[Any] = []
    if service is not None:
        jobs = service.list_jobs(user.team.id, limit=50, started_by=_started_by(user))
        catalog = dashboard_of(request).book.catalog
        features = [(k, catalog.feature(k), service.cost(k)) for k in service.job_features()]
    return render(
        request,
        "enrichment.html",
        {
            "title": "Enrichment",
            "service": service is not None,
            "jobs": jobs,
            "features": features,
            "default_sample": DEFAULT_SAMPLE,
            "reasons": REASONS,
        },
    )


@router.post("/enrichment")
async def create_job(request: Request, user: UserDep, form: FormDep) -> Response:
    from starlette.concurrency import run_in_threadpool

    from creditbook.service.leads import parse_csv

    service = _service(request)
    upload = form.get("leads")
    if not isinstance(upload, UploadFile) or not upload.filename:
        raise InvalidInput("choose a CSV file of leads to upload", field="leads")
    # The whole request is held to max_upload_bytes as it arrives (413 beyond it).
    most = dashboard_of(request).settings.max_upload_bytes
    raw = await upload.read(most + 1)
    if len(raw) > most:
        raise InvalidInput(f"the CSV file is larger than {most:,} bytes; split it in smaller files")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput("the CSV file must be UTF-8 text") from None
    leads = parse_csv(text)
    features = [f for f in form.getlist("features") if isinstance(f, str)]
    if not features:
        raise InvalidInput("choose at least one feature to run", field="features")
    action = form.get("action")
    sample: int | None = None
    if action == "sample":
        size = parse_whole(
            str(form.get("sample_size") or DEFAULT_SAMPLE),
            "sample_size",
            minimum=1,
            maximum=MAX_JOB_LEADS,
            label="the sample size",
            what="a whole number of leads",
        )
        assert size is not None  # the default fills a blank field
        sample = min(size, len(leads)) if leads else size
    job = await run_in_threadpool(
        service.create_job,
        user.team.id,
        leads,
        features,
        member_id=user.member.id,
        api_key_id=user.key_id,
        sample_size=sample,
        estimate_only=action in ("estimate", "sample"),
    )
    if job.status == "queued":
        _run_in_background(service, user.team.id, job.id)
    return redirect(f"{PREFIX}/enrichment/{job.id}")


@router.get("/enrichment/{job_id}")
def job_page(request: Request, job_id: str, user: UserDep) -> Response:
    dash = dashboard_of(request)
    job = _job_for(request, user, job_id)
    preview = _service(request).results(user.team.id, job_id)[:20] if job.processed else []
    return render(
        request,
        "job.html",
        {
            "title": f"Enrichment job {job.id}",
            "job": job,
            "status": _status(job),
            "reason": REASONS.get(job.pause_reason or "", job.pause_reason),
            "available": dash.book.balance(user.team.id).available,
            "preview": preview,
            "live": job.status in ("queued", "running"),
        },
    )


@router.get("/enrichment/{job_id}/status.json")
def job_status(request: Request, job_id: str, user: UserDep) -> Response:
    return JSONResponse(_status(_job_for(request, user, job_id)))


@router.post("/enrichment/{job_id}/resume")
def resume(request: Request, job_id: str, user: UserDep, form: FormDep) -> Response:
    service = _service(request)
    _job_for(request, user, job_id)
    limit = parse_whole(
        str(form.get("credit_limit") or ""),
        "credit_limit",
        label="the credit limit",
        what="a whole number of credits",
    )
    job = service.resume(user.team.id, job_id, credit_limit=limit)
    if job.status == "queued":
        _run_in_background(service, user.team.id, job.id)
    session_of(request).say("The job is running again from where it stopped.", "success")
    return redirect(f"{PREFIX}/enrichment/{job_id}")


@router.post("/enrichment/{job_id}/cancel")
def cancel(request: Request, job_id: str, user: UserDep, form: FormDep) -> Response:
    service = _service(request)
    _job_for(request, user, job_id)
    service.cancel(user.team.id, job_id)
    session_of(request).say("The job is cancelled; nothing more will be charged.", "success")
    return redirect(f"{PREFIX}/enrichment/{job_id}")


@router.get("/enrichment/{job_id}/results.csv")
def results_csv(request: Request, job_id: str, user: UserDep, _: ExportLimit) -> Response:
    _job_for(request, user, job_id)
    body = _service(request).results_csv(user.team.id, job_id)
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{job_id}-results.csv"'},
    )
