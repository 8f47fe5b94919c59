"""Health, readiness and the benchmark no-op: no authentication."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from creditbook.adapters.db import migrate
from creditbook.entrypoints.api.deps import ServicesDep
from creditbook.entrypoints.api.problems import NotReady, problem_responses
from creditbook.entrypoints.api.schemas import Health

router = APIRouter(tags=["system"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is up (no database work)."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses=problem_responses(503))
def readyz(svc: ServicesDep) -> Health:
    """The database answers, and its schema is at this version's head revision."""
    engine = svc.book.engine
    problem = None
    try:
        if engine is not None:
            with engine.connect() as conn:
                conn.execute(text("select 1"))
            problem = migrate.schema_problem(engine)
    except Exception as exc:
        raise NotReady(f"database unreachable: {type(exc).__name__}") from None
    if problem is not None:
        raise NotReady(f"database schema not at this version's head: {problem}")
    return Health(status="ready")


noop_router = APIRouter(tags=["system"])


@noop_router.get("/v1/noop", response_model=Health)
async def noop() -> Health:
    """Does nothing (no auth, no database): the baseline for benchmarks."""
    return Health(status="ok")
