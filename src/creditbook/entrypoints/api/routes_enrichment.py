"""Enrichment jobs, lemlist-style single-lead enrichment and AI variables over HTTP.

Jobs run in this process, in a background worker (a thread with its own event
loop, ``JobWorker``): ``POST /v1/enrichment-jobs`` answers at once with the
``queued`` job and its estimate, and ``GET /v1/enrichment-jobs/{id}`` shows
its progress. The worker starts with the app (the router's lifespan) or with
the first enrichment request, whichever comes first; starting, it marks jobs
a dead process left ``running`` as ``paused`` (``interrupted``), runs the
queued ones and polls for auto-resume. Charges of a job are attributed to
the member whose key started it.

A member's key lists, reads, resumes, cancels and downloads only the jobs its
member started (``/api/enrich/{id}`` too): any other job answers 404, exactly
as a job of another team. Admins' and service keys reach every job of the team.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any
from weakref import WeakKeyDictionary

from fastapi import APIRouter, Path, Query, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from creditbook.domain.limits import MAX_CREDITS, MAX_DEDUPE_DAYS, MAX_JOB_LEADS
from creditbook.entrypoints.api.deps import (
    AdminDep,
    IdempotencyKey,
    KeyFirst,
    MemberDep,
    ServicesDep,
    actor_of,
)
from creditbook.entrypoints.api.problems import problem_responses
from creditbook.service.access import Principal
from creditbook.service.credits import Creditbook
from creditbook.service.enrichment import (
    EnrichmentJob,
    EnrichmentService,
    enrichment_for,
)
from creditbook.service.job_worker import JobWorker
from creditbook.service.kernel import Kernel


@asynccontextmanager
async def _lifespan(app: Any) -> AsyncIterator[None]:
    """Start the job worker with the app: interrupted jobs are found at startup."""
    services = getattr(app.state, "services", None)
    enabled = os.environ.get("CREDITBOOK_JOB_WORKER", "1").strip().lower() not in ("0", "false")
    book: Creditbook | None = services.book if services is not None and enabled else None
    if book is not None:
        try:
            worker_for(book)
        except Exception:
            # A database that is down at startup must not stop the API: /readyz
            # reports it, and the first enrichment request starts the worker.
            log.exception("enrichment job worker not started")
            book = None
    try:
        yield
    finally:
        if book is not None:
            stop_worker(book)


router = APIRouter(
    tags=["enrichment"],
    responses=problem_responses(401, 403, 404, 422, 429),
    lifespan=_lifespan,
    route_class=KeyFirst,  # a job's leads (up to max_upload_bytes) are read after the key
)
JobId = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_]+$")]

log = logging.getLogger("creditbook.enrichment")
_WORKERS: WeakKeyDictionary[Kernel[Any], JobWorker] = WeakKeyDictionary()
_LOCK = threading.Lock()


def worker_for(owner: Creditbook | Kernel[Any]) -> JobWorker:
    """The background job worker of the book (or its kernel), started on first use."""
    kernel = owner if isinstance(owner, Kernel) else owner.kernel
    with _LOCK:
        worker = _WORKERS.get(kernel)
        if worker is None:
            worker = JobWorker(enrichment_for(kernel)).start()
            _WORKERS[kernel] = worker
        return worker


def stop_worker(owner: Creditbook | Kernel[Any]) -> None:
    """Stop the book's worker (tests, shutdown); a later request starts a new one."""
    kernel = owner if isinstance(owner, Kernel) else owner.kernel
    with _LOCK:
        worker = _WORKERS.pop(kernel, None)
    if worker is not None:
        worker.stop()


# ---- schemas ---------------------------------------------------------------------------


class LeadIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    first_name: str | None = Field(None, max_length=200)
    last_name: str | None = Field(None, max_length=200)
    company_name: str | None = Field(None, max_length=200)
    company_domain: str | None = Field(None, max_length=253)
    linkedin_url: str | None = Field(None, max_length=500)
    email: str | None = Field(None, max_length=320)
    phone: str | None = Field(None, max_length=64)


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    leads: list[dict[str, Any]] = Field(
        ..., min_length=1, description="Lead objects; each is validated on its own."
    )
    features: list[str] = Field(..., min_length=1, examples=[["email_finder", "phone_finder"]])
    provider: str | None = Field(None, examples=["sandbox"])
    sample_size: int | None = Field(None, ge=1, le=MAX_JOB_LEADS)
    estimate_only: bool = False
    credit_limit: int | None = Field(None, ge=0, le=MAX_CREDITS)


class ResumeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    credit_limit: int | None = Field(None, ge=0, le=MAX_CREDITS)


class AiVariableIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(..., min_length=1, max_length=20_000)
    lead: LeadIn = Field(default_factory=LeadIn)
    provider: str | None = None


class EnrichIn(BaseModel):
    """lemlist's single-lead enrichment: camelCase lead fields and feature flags."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    first_name: str | None = Field(None, alias="firstName", max_length=200)
    last_name: str | None = Field(None, alias="lastName", max_length=200)
    company_name: str | None = Field(None, alias="companyName", max_length=200)
    company_domain: str | None = Field(None, alias="companyDomain", max_length=253)
    linkedin_url: str | None = Field(None, alias="linkedinUrl", max_length=500)
    email: str | None = Field(None, max_length=320)
    phone: str | None = Field(None, max_length=64)
    find_email: bool = Field(False, alias="findEmail")
    linkedin_enrichment: bool = Field(False, alias="linkedinEnrichment")
    find_phone: bool = Field(False, alias="findPhone")


class SettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    auto_resume: bool | None = None
    dedupe_window_days: int | None = Field(None, ge=0, le=MAX_DEDUPE_DAYS)


def _job(job: EnrichmentJob) -> dict[str, Any]:
    return {"job": job.to_dict()}


def _reachable(svc: ServicesDep, me: Principal, job_id: str) -> EnrichmentJob:
    """The job, if the caller may see it (else 404, as for a job of another team)."""
    return _service(svc).get_job(me.team_id, job_id, started_by=me.confined_to)


def _service(svc: ServicesDep) -> EnrichmentService:
    return enrichment_for(svc.book)


# ---- jobs -------------------------------------------------------------------------------


@router.post(
    "/v1/enrichment-jobs",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(409),
)
def create_job(
    body: JobCreate, svc: ServicesDep, me: MemberDep, idempotency_key: IdempotencyKey = None
) -> dict[str, Any]:
    """Create a job (``leads x features``) and start it; answers at once with its estimate.

    With ``estimate_only`` and no ``sample_size`` nothing runs (``paused``,
    ``estimate_only``); with ``sample_size`` the first leads run, then the job
    pauses with the expected cost of the rest.
    """
    enrichment = _service(svc)
    job = enrichment.create_job(
        me.team_id,
        body.leads,
        body.features,
        member_id=me.member_id,
        api_key_id=me.key_id,
        provider=body.provider,
        sample_size=body.sample_size,
        estimate_only=body.estimate_only,
        credit_limit=body.credit_limit,
        idempotency_key=idempotency_key,
    )
    if job.status == "queued":
        worker_for(svc.book).submit(me.team_id, job.id)
    return _job(job)


@router.get("/v1/enrichment-jobs")
def list_jobs(
    svc: ServicesDep,
    me: MemberDep,
    status_filter: Annotated[str | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    """The latest jobs: a member's own, or every job of the team for admins and service keys."""
    jobs = _service(svc).list_jobs(
        me.team_id, status=status_filter, limit=limit, started_by=me.confined_to
    )
    return {"jobs": [j.to_dict() for j in jobs]}


@router.get("/v1/enrichment-jobs/{job_id}")
def get_job(job_id: JobId, svc: ServicesDep, me: MemberDep) -> dict[str, Any]:
    """Status, progress (processed / total, found, credits spent) and row errors."""
    return _job(_reachable(svc, me, job_id))


@router.post("/v1/enrichment-jobs/{job_id}/resume", responses=problem_responses(409))
def resume_job(
    job_id: JobId, svc: ServicesDep, me: MemberDep, body: ResumeIn | None = None
) -> dict[str, Any]:
    """Resume a paused job where it stopped (optionally with a new credit limit)."""
    enrichment = _service(svc)
    _reachable(svc, me, job_id)
    job = enrichment.resume(
        me.team_id, job_id, credit_limit=body.credit_limit if body is not None else None
    )
    if job.status == "queued":
        worker_for(svc.book).submit(me.team_id, job.id)
    return _job(job)


@router.post("/v1/enrichment-jobs/{job_id}/cancel", responses=problem_responses(409))
def cancel_job(job_id: JobId, svc: ServicesDep, me: MemberDep) -> dict[str, Any]:
    _reachable(svc, me, job_id)
    return _job(_service(svc).cancel(me.team_id, job_id))


@router.get(
    "/v1/enrichment-jobs/{job_id}/results.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}},
)
def job_results(job_id: JobId, svc: ServicesDep, me: MemberDep) -> Response:
    """One row per lead: its fields, then each feature's status, value, credits and source."""
    _reachable(svc, me, job_id)
    text = _service(svc).results_csv(me.team_id, job_id)
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{job_id}.csv"'},
    )


@router.get("/v1/enrichment-settings")
def get_settings(svc: ServicesDep, me: MemberDep) -> dict[str, Any]:
    return _service(svc).team_settings(me.team_id)


@router.put("/v1/enrichment-settings")
def put_settings(body: SettingsIn, svc: ServicesDep, me: AdminDep) -> dict[str, Any]:
    """Admins: opt in to automatic resume when credits arrive; set the dedupe window."""
    return _service(svc).set_team_settings(
        me.team_id, auto_resume=body.auto_resume, dedupe_window_days=body.dedupe_window_days
    )


# ---- lemlist-style single lead --------------------------------------------------------------

_FLAGS = (
    ("find_email", "email_finder", "email"),
    ("linkedin_enrichment", "linkedin_enrichment", "linkedin"),
    ("find_phone", "phone_finder", "phone"),
)


@router.post(
    "/api/enrich",
    status_code=status.HTTP_201_CREATED,
    tags=["lemlist"],
    responses=problem_responses(409),
)
def enrich_one(
    body: EnrichIn, svc: ServicesDep, me: MemberDep, idempotency_key: IdempotencyKey = None
) -> dict[str, Any]:
    """Enrich one lead (flags ``findEmail``, ``linkedinEnrichment``, ``findPhone``); answers
    an id to poll with ``GET /api/enrich/{id}``."""
    features = [feature for flag, feature, _ in _FLAGS if getattr(body, flag)]
    lead = body.model_dump(exclude={flag for flag, _, _ in _FLAGS}, exclude_none=True)
    enrichment = _service(svc)
    job = enrichment.create_job(
        me.team_id,
        [lead],
        features,
        member_id=me.member_id,
        api_key_id=me.key_id,
        kind="single",
        idempotency_key=idempotency_key,
    )
    worker_for(svc.book).submit(me.team_id, job.id)
    return {"id": job.id}


@router.get("/api/enrich/{job_id}", tags=["lemlist"], responses={202: {"description": "Running"}})
def enrich_result(job_id: JobId, svc: ServicesDep, me: MemberDep) -> JSONResponse:
    """202 while the enrichment runs (or waits for credits), 200 with the data when done."""
    enrichment = _service(svc)
    job = _reachable(svc, me, job_id)
    body: dict[str, Any] = {"id": job.id, "status": job.status}
    if not job.done:
        if job.pause_reason:
            body["pause_reason"] = job.pause_reason
            body["credits_needed"] = job.credits_needed
        return JSONResponse(body, status_code=status.HTTP_202_ACCEPTED)
    data: dict[str, Any] = {}
    for row in enrichment.results(me.team_id, job_id)[:1]:
        for _, feature, key in _FLAGS:
            item = row.items.get(feature)
            if item is not None:
                data[key] = {
                    "status": item.status,
                    "value": item.value,
                    "credits": item.credits,
                    **({"data": dict(item.data)} if item.data else {}),
                }
    body["data"] = data
    body["credits"] = job.credits_spent
    return JSONResponse(body, status_code=status.HTTP_200_OK)


# ---- AI variables ------------------------------------------------------------------------------


@router.post(
    "/v1/ai-variables",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(402, 409),
)
async def ai_variable(
    body: AiVariableIn, svc: ServicesDep, me: MemberDep, idempotency_key: IdempotencyKey = None
) -> dict[str, Any]:
    """Generate an AI variable: 1 credit held, captured on success, released on failure."""
    made = await _service(svc).generate_ai_variable(
        me.team_id,
        body.prompt,
        body.lead.model_dump(exclude_none=True),
        actor=actor_of(me),
        provider=body.provider,
        idempotency_key=idempotency_key,
    )
    return made.to_dict()
