"""Bulk enrichment jobs that charge only for results, pause when credits run out, charge once.

A job is ``leads x features``. Each (lead, feature) is an *item* row whose
state moves ``pending -> held -> done`` (or ``error``/``cancelled``). The job
runs in steps:

1. **reserve** (one transaction on the team): take the next pending items,
   answer those the lead cache knows (free), hold the cost of the others in
   the team's book and mark them ``held`` with their hold id;
2. **look up** (no transaction): ask the provider waterfall for every held
   item, ``concurrency`` calls in flight at most;
3. **settle** (one transaction on the team): capture the holds whose result
   is billable, release the others, mark the items ``done`` with their
   result, add the billable results to the lead cache, move the counters.

Exactly once: a hold and the item's ``held`` mark are written in one
transaction, and a capture/release and the item's ``done`` mark in another,
so the item table and the ledger can never disagree, whatever instant the
process dies at. After a crash, resuming finds items still ``held``: their
holds are active (or expired, i.e. released), so the runner looks them up
again and settles them; an item is charged only by the transaction that
moves it out of ``held``, and that happens once. Entries carry deterministic
idempotency keys (``job:{job}:{lead}:{feature}:hold|capture|release``) so
the ledger says which item each movement was for. See
``docs/decisions/0006-enrichment-jobs.md``.

Out of credits: when the first hold of a step is refused, nothing is in
flight, and the job pauses with ``insufficient_credits`` and the credits it
needs to finish; it resumes only when asked (or, if the team opted in to
``auto_resume``, when the worker sees enough credits).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol
from weakref import WeakKeyDictionary

from sqlalchemy import Connection, and_, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from creditbook.adapters.db import job_leases as leases
from creditbook.adapters.db.repository import SqlUnitOfWork
from creditbook.adapters.db.tables_enrichment import (
    enrichment_items,
    enrichment_jobs,
    enrichment_lead_cache,
    enrichment_leads,
    enrichment_settings,
)
from creditbook.adapters.notify.base import SendResult
from creditbook.adapters.providers.base import AI_VARIABLE, FEATURE_OUTCOMES, Lead, Result
from creditbook.adapters.providers.config import build_registry, default_registry
from creditbook.adapters.providers.registry import ProviderRegistry
from creditbook.domain.book import TeamBook
from creditbook.domain.catalog import Catalog
from creditbook.domain.errors import (
    CapExceeded,
    CreditbookError,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidInput,
    MemberNotFound,
    NotFound,
    TeamNotFound,
)
from creditbook.domain.holds import Hold, HoldStatus
from creditbook.domain.ids import new_id
from creditbook.domain.ledger import SYSTEM, Actor
from creditbook.domain.limits import check_credits
from creditbook.domain.pricing import max_quote
from creditbook.service.csv_safe import csv_writer
from creditbook.service.job_leases import (
    JobStateConflict,
    JobStillOwned,
    keep_lease,
    renew_every,
    still_owned,
)
from creditbook.service.kernel import Kernel
from creditbook.service.leads import LEAD_FIELDS
from creditbook.service.notifications import AlertKind, NotificationService
from creditbook.service.requests import request_hash
from creditbook.service.spending import Spending

RegistryFactory = Callable[[], ProviderRegistry]
ProgressCallback = Callable[["JobProgress"], None]
PauseListener = Callable[["EnrichmentJob"], None]

MISSING_INPUTS = "MISSING_INPUTS"
INVALID_LEAD = "INVALID_LEAD"
PROVIDER_ERROR = "PROVIDER_ERROR"
MAX_ERRORS_SHOWN = 100

# Pause reasons.
INSUFFICIENT_CREDITS = "insufficient_credits"
CREDIT_LIMIT = "credit_limit"
MEMBER_CAP = "member_cap_exceeded"
KEY_CAP = "key_cap_exceeded"  # the API key that started the job reached its cap
INTERRUPTED = "interrupted"
ESTIMATE_ONLY = "estimate_only"


class JobNotFound(NotFound):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"no enrichment job {job_id!r} in this team", resource="job", id=job_id)


@dataclass(frozen=True, slots=True)
class EnrichmentOptions:
    """How jobs run; the defaults suit a laptop and the sandbox."""

    concurrency: int = 32  # provider calls in flight per job
    chunk_size: int = 500  # items reserved and settled per transaction
    hold_ttl_seconds: int = 3600  # a crashed job's holds return by themselves after this
    dedupe_window: timedelta = timedelta(days=30)
    stale_after: timedelta = timedelta(seconds=60)  # a runner's lease (service/job_leases.py)
    max_leads: int = 200_000
    auto_resume_poll_seconds: float = 5.0


@dataclass(frozen=True, slots=True)
class JobError:
    lead_index: int
    feature: str
    code: str
    message: str
    missing: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "lead_index": self.lead_index,
            "feature": self.feature,
            "code": self.code,
            "message": self.message,
        }
        if self.missing:
            out["missing"] = list(self.missing)
        return out


@dataclass(frozen=True, slots=True)
class Estimate:
    """The most the job can cost, and after a sample what it is expected to cost."""

    max_credits: int
    expected_credits: int | None
    sample_size: int | None
    billable_rates: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_credits": self.max_credits,
            "expected_credits": self.expected_credits,
            "sample_size": self.sample_size,
            "billable_rates": dict(self.billable_rates),
        }


@dataclass(frozen=True, slots=True)
class JobProgress:
    job_id: str
    status: str
    total: int
    processed: int
    found: int
    credits_spent: int


@dataclass(frozen=True, slots=True)
class EnrichmentJob:
    id: str
    team_id: str
    kind: str
    status: str
    pause_reason: str | None
    features: tuple[str, ...]
    provider: str | None
    member_id: str | None
    api_key_id: str | None
    leads: int
    total: int
    processed: int
    found: int
    errors_count: int
    credits_spent: int
    credits_needed: int | None
    credit_limit: int | None
    estimate: Estimate
    errors: tuple[JobError, ...]
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def done(self) -> bool:
        return self.status in ("completed", "cancelled")

    def to_dict(self) -> dict[str, Any]:
        """The job as the HTTP API shows it."""
        return {
            "id": self.id,
            "status": self.status,
            "pause_reason": self.pause_reason,
            "features": list(self.features),
            "provider": self.provider,
            "member_id": self.member_id,
            "leads": self.leads,
            "total": self.total,
            "processed": self.processed,
            "found": self.found,
            "credits_spent": self.credits_spent,
            "credits_needed": self.credits_needed,
            "credit_limit": self.credit_limit,
            "estimate": self.estimate.to_dict(),
            "errors_count": self.errors_count,
            "errors": [e.to_dict() for e in self.errors],
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


@dataclass(frozen=True, slots=True)
class ItemResult:
    feature: str
    state: str
    outcome: str | None
    value: str | None
    credits: int
    provider: str | None
    error_code: str | None
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """What the results CSV shows: the outcome, the error code or the state."""
        if self.state == "done" and self.outcome:
            return self.outcome
        if self.state == "error" and self.error_code:
            return self.error_code
        return "pending" if self.state == "held" else self.state


@dataclass(frozen=True, slots=True)
class LeadResult:
    lead_index: int
    lead: Mapping[str, Any]
    items: Mapping[str, ItemResult]


@dataclass(frozen=True, slots=True)
class AiVariableResult:
    text: str | None
    outcome: str
    credits: int
    hold_id: str
    charge_id: str | None
    provider: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "outcome": self.outcome,
            "credits": self.credits,
            "hold_id": self.hold_id,
            "charge_id": self.charge_id,
            "provider": self.provider,
        }


@dataclass(frozen=True, slots=True)
class _Step:
    """What one reserve/settle transaction decided (a receipt for ``Kernel.transact``)."""

    payload: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return self.payload

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> _Step:
        return cls(data)


@dataclass(frozen=True, slots=True)
class _Work:
    lead_index: int
    feature: str
    hold_id: str
    attempt: int
    lead: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class _Outcome:
    work: _Work
    result: Result | None
    error: str | None


_CACHE_UPDATED = ("outcome", "value", "data", "provider", "credits", "job_id", "cached_at")

_ITEM_DONE = (
    update(enrichment_items)
    .where(
        and_(
            enrichment_items.c.team_id == bindparam("b_team"),
            enrichment_items.c.job_id == bindparam("b_job"),
            enrichment_items.c.lead_index == bindparam("b_lead"),
            enrichment_items.c.feature == bindparam("b_feature"),
        )
    )
    .values(
        state=bindparam("b_state"),
        hold_id=bindparam("b_hold"),
        attempt=bindparam("b_attempt"),
        outcome=bindparam("b_outcome"),
        value=bindparam("b_value"),
        data=bindparam("b_data"),
        credits=bindparam("b_credits"),
        provider=bindparam("b_provider"),
        error_code=bindparam("b_error_code"),
        error=bindparam("b_error"),
    )
)

_ITEM_HELD = (
    update(enrichment_items)
    .where(
        and_(
            enrichment_items.c.team_id == bindparam("b_team"),
            enrichment_items.c.job_id == bindparam("b_job"),
            enrichment_items.c.lead_index == bindparam("b_lead"),
            enrichment_items.c.feature == bindparam("b_feature"),
        )
    )
    .values(state="held", hold_id=bindparam("b_hold"))
)


# On PostgreSQL the same updates are one statement per step, the rows read from
# one JSON parameter: psycopg's executemany sends one UPDATE per item (pipelined),
# which was most of a step's database time at 1,000 items. ``data`` keeps what the
# JSON column type writes for None (a JSON ``null``, not SQL NULL).
_ITEM_KEYS = ("b_team", "b_job", "b_lead", "b_feature")
_PG_ITEM_SQL = {
    "done": (
        "state = v.b_state, hold_id = v.b_hold, attempt = v.b_attempt, "
        "outcome = v.b_outcome, value = v.b_value, data = COALESCE(v.b_data, 'null'::json), "
        "credits = v.b_credits, provider = v.b_provider, error_code = v.b_error_code, "
        "error = v.b_error",
        "b_state text, b_hold text, b_attempt integer, b_outcome text, b_value text, "
        "b_data json, b_credits bigint, b_provider text, b_error_code text, b_error text",
    ),
    "held": ("state = 'held', hold_id = v.b_hold", "b_hold text"),
}


def _update_items(uow: SqlUnitOfWork, statement: Any, rows: list[dict[str, Any]]) -> None:
    """Run ``_ITEM_DONE`` or ``_ITEM_HELD`` for every row (one statement on PostgreSQL)."""
    if uow.dialect != "postgresql":
        uow.conn.execute(statement, rows)
        return
    sets, record = _PG_ITEM_SQL["held" if statement is _ITEM_HELD else "done"]
    # executemany applies rows in order, so a later row for the same item wins.
    last = {tuple(r[k] for k in _ITEM_KEYS): r for r in rows}
    sql = (
        f"UPDATE enrichment_items AS t SET {sets} "
        "FROM json_to_recordset(CAST(%s AS json)) AS v(b_team text, b_job text, "
        f"b_lead integer, b_feature text, {record}) "
        "WHERE t.team_id = v.b_team AND t.job_id = v.b_job AND t.lead_index = v.b_lead "
        "AND t.feature = v.b_feature"
    )
    uow.execute_unprepared(sql, [json.dumps(list(last.values()))])


def _item_key(job_id: str, lead_index: int, feature: str, step: str, attempt: int) -> str:
    base = f"job:{job_id}:{lead_index}:{feature}:{step}"
    return base if attempt == 0 else f"{base}:{attempt}"


def sandbox_registry_factory(catalog: Catalog) -> RegistryFactory:
    """The deterministic sandbox for every enrichment feature of the catalog."""
    billable = {
        k: f.billable_outcomes for k, f in catalog.features.items() if k in FEATURE_OUTCOMES
    }
    return lambda: default_registry(billable)


def configured_registry_factory(catalog: Catalog, path: Path) -> RegistryFactory:
    """Waterfalls from a provider configuration file (TOML or JSON, see providers.config)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.casefold() == ".json":
        config: dict[str, Any] = json.loads(text)
    else:
        import tomllib

        config = tomllib.loads(text)
    billable = {k: f.billable_outcomes for k, f in catalog.features.items()}
    build_registry(config, billable_outcomes=billable)  # fail at start-up, not mid-job
    return lambda: build_registry(config, billable_outcomes=billable)


class EnrichmentService:
    """Enrichment jobs over one kernel. Get the shared one with ``enrichment_for``."""

    def __init__(
        self,
        kernel: Kernel[SqlUnitOfWork],
        spending: Spending | None = None,
        *,
        providers: Mapping[str, RegistryFactory] | None = None,
        options: EnrichmentOptions | None = None,
    ) -> None:
        self.kernel = kernel
        self.spending = spending or Spending(kernel)
        self.options = options or EnrichmentOptions()
        factories = dict(providers or {})
        factories.setdefault("sandbox", sandbox_registry_factory(kernel.catalog))
        factories.setdefault("default", factories["sandbox"])
        self.providers: dict[str, RegistryFactory] = factories
        # In-process listeners (after commit); the durable alert is written by
        # ``_alert_paused`` inside the pausing transaction.
        self.pause_listeners: list[PauseListener] = []
        self.notifications = NotificationService(kernel.uow, kernel.clock, sender=_NoSender())

    # ---- creating and reading jobs -------------------------------------------------

    def check_features(self, features: Sequence[str]) -> tuple[str, ...]:
        if isinstance(features, str) or not features:
            raise InvalidInput(
                "features is a non-empty list, e.g. ['email_finder', 'phone_finder']",
                field="features",
            )
        chosen: list[str] = []
        for name in features:
            feature = self.kernel.catalog.feature(name)
            if feature.metered_by_call or name == AI_VARIABLE:
                raise InvalidInput(
                    f"feature {name!r} cannot run in an enrichment job; job features: "
                    f"{', '.join(self.job_features())}"
                    + (
                        " (use POST /v1/ai-variables for AI variables)"
                        if name == AI_VARIABLE
                        else ""
                    ),
                    field="features",
                )
            if name not in chosen:
                chosen.append(name)
        return tuple(chosen)

    def job_features(self) -> list[str]:
        return sorted(
            k
            for k, f in self.kernel.catalog.features.items()
            if not f.metered_by_call and k != AI_VARIABLE
        )

    def cost(self, feature: str) -> int:
        """What one (lead, feature) can cost at most: what its hold reserves."""
        return max_quote(self.kernel.catalog, feature).credits

    def create_job(
        self,
        team_id: str,
        leads: Sequence[Any],
        features: Sequence[str],
        *,
        member_id: str | None = None,
        api_key_id: str | None = None,
        provider: str | None = None,
        sample_size: int | None = None,
        estimate_only: bool = False,
        credit_limit: int | None = None,
        kind: str = "job",
        idempotency_key: str | None = None,
    ) -> EnrichmentJob:
        """Validate the leads one by one and store the job (``queued``; nothing is spent).

        A lead missing what a feature needs gets a ``MISSING_INPUTS`` error on that
        (lead, feature) and the rest of the job is unaffected. ``estimate_only``
        without ``sample_size`` stores the job ``paused`` (reason ``estimate_only``)
        with its maximum cost; with ``sample_size`` the runner enriches the first
        ``sample_size`` leads, computes the expected cost of the rest, then pauses.
        The same ``idempotency_key`` with the same request answers the first job.
        """
        chosen = self.check_features(features)
        digest = None
        if idempotency_key is not None:
            digest = request_hash(
                "enrichment.create",
                {"leads": list(leads), "features": list(chosen), "member": member_id,
                 "key": api_key_id, "provider": provider, "sample_size": sample_size,
                 "estimate_only": estimate_only, "credit_limit": credit_limit, "kind": kind},
            )  # fmt: skip
            known = self._job_for_key(team_id, idempotency_key, digest)
            if known is not None:
                return known
        if provider is not None and provider not in self.providers:
            raise InvalidInput(
                f"unknown provider {provider!r}; valid: {', '.join(sorted(self.providers))}",
                field="provider",
            )
        if isinstance(leads, (str, bytes)) or not isinstance(leads, Sequence):
            raise InvalidInput("leads is a list of lead objects", field="leads")
        if not 1 <= len(leads) <= self.options.max_leads:
            raise InvalidInput(
                f"a job has 1 to {self.options.max_leads} leads, got {len(leads)}", field="leads"
            )
        if sample_size is not None and (
            isinstance(sample_size, bool)
            or not isinstance(sample_size, int)
            or not 1 <= sample_size <= len(leads)
        ):
            raise InvalidInput(
                f"sample_size is between 1 and the number of leads ({len(leads)})",
                field="sample_size",
            )
        _check_limit(credit_limit)
        now = self.kernel.clock.now()
        job_id = new_id("job")
        lead_rows: list[dict[str, Any]] = []
        item_rows: list[dict[str, Any]] = []
        max_credits = 0
        errors = 0
        costs = {f: self.cost(f) for f in chosen}
        for index, raw in enumerate(leads):
            if not isinstance(raw, Mapping):
                lead_rows.append({"team_id": team_id, "job_id": job_id, "lead_index": index,
                                  "data": {"_invalid": repr(raw)[:200]}})  # fmt: skip
                for feature in chosen:
                    errors += 1
                    item_rows.append(
                        _new_item(team_id, job_id, index, feature, "", "error", INVALID_LEAD,
                                  "the lead is not an object with fields such as first_name")
                    )  # fmt: skip
                continue
            data = {str(k): str(v) for k, v in raw.items() if v is not None}
            lead = Lead.from_mapping(data)
            fingerprint = lead.fingerprint()
            lead_rows.append(
                {"team_id": team_id, "job_id": job_id, "lead_index": index, "data": data}
            )
            for feature in chosen:
                missing = lead.missing_inputs(feature)
                if missing:
                    errors += 1
                    item_rows.append(
                        _new_item(team_id, job_id, index, feature, fingerprint, "error",
                                  MISSING_INPUTS, ",".join(missing))
                    )  # fmt: skip
                else:
                    max_credits += costs[feature]
                    item_rows.append(_new_item(team_id, job_id, index, feature, fingerprint))
        paused = estimate_only and sample_size is None
        with self.kernel.uow() as uow:
            uow.lock_team(team_id)
            if member_id is not None and uow.get_member(team_id, member_id) is None:
                raise MemberNotFound(member_id)
            if idempotency_key is not None and digest is not None:
                raced = self._job_id_for_key(uow.conn, team_id, idempotency_key, digest)
                if raced is not None:
                    return self._load_job(uow.conn, team_id, raced)
            uow.conn.execute(
                insert(enrichment_jobs).values(
                    team_id=team_id,
                    id=job_id,
                    kind=kind,
                    status="paused" if paused else "queued",
                    pause_reason=ESTIMATE_ONLY if paused else None,
                    member_id=member_id,
                    api_key_id=api_key_id,
                    features=list(chosen),
                    provider=provider,
                    credit_limit=credit_limit,
                    sample_size=sample_size,
                    estimate_only=estimate_only,
                    sample_done=False,
                    leads=len(leads),
                    total=len(item_rows),
                    processed=errors,
                    found=0,
                    errors=errors,
                    credits_spent=0,
                    max_credits=max_credits,
                    created_at=now,
                    updated_at=now,
                    idempotency_key=idempotency_key,
                    request_hash=digest,
                )
            )
            for start in range(0, len(lead_rows), 5000):
                uow.conn.execute(insert(enrichment_leads), lead_rows[start : start + 5000])
            for start in range(0, len(item_rows), 5000):
                uow.conn.execute(insert(enrichment_items), item_rows[start : start + 5000])
            uow.commit()
        return self.get_job(team_id, job_id)

    def _job_for_key(self, team_id: str, key: str, digest: str) -> EnrichmentJob | None:
        with self.kernel.uow() as uow:
            found = self._job_id_for_key(uow.conn, team_id, key, digest)
            return self._load_job(uow.conn, team_id, found) if found is not None else None

    def _job_id_for_key(self, conn: Connection, team_id: str, key: str, digest: str) -> str | None:
        j = enrichment_jobs
        row = conn.execute(
            select(j.c.id, j.c.request_hash).where(
                j.c.team_id == team_id, j.c.idempotency_key == key
            )
        ).first()
        if row is None:
            return None
        if row.request_hash != digest:
            raise IdempotencyConflict(key)
        return str(row.id)

    def get_job(self, team_id: str, job_id: str, *, started_by: str | None = None) -> EnrichmentJob:
        """The job; with ``started_by``, only if that member started it, else ``JobNotFound``
        exactly as for a job of another team (a member's reach: ``service.principals``)."""
        with self.kernel.uow() as uow:
            job = self._load_job(uow.conn, team_id, job_id)
        if started_by is not None and job.member_id != started_by:
            raise JobNotFound(job_id)
        return job

    def find_job(self, job_id: str) -> EnrichmentJob:
        """A job by id alone (ids are unique across teams): for the operator's CLI."""
        with self.kernel.uow() as uow:
            team_id = uow.conn.execute(
                select(enrichment_jobs.c.team_id).where(enrichment_jobs.c.id == job_id)
            ).scalar()
            if team_id is None:
                raise JobNotFound(job_id)
            return self._load_job(uow.conn, str(team_id), job_id)

    def list_jobs(
        self,
        team_id: str,
        *,
        status: str | None = None,
        limit: int = 50,
        started_by: str | None = None,
    ) -> list[EnrichmentJob]:
        """The latest jobs; with ``started_by``, that member's only."""
        j = enrichment_jobs
        with self.kernel.uow() as uow:
            query = select(j.c.id).where(j.c.team_id == team_id)
            if status is not None:
                query = query.where(j.c.status == status)
            if started_by is not None:
                query = query.where(j.c.member_id == started_by)
            ids = [r.id for r in uow.conn.execute(query.order_by(j.c.id.desc()).limit(limit))]
            return [self._load_job(uow.conn, team_id, i) for i in ids]

    def _load_job(self, conn: Connection, team_id: str, job_id: str) -> EnrichmentJob:
        j, it = enrichment_jobs, enrichment_items
        row = conn.execute(select(j).where(j.c.team_id == team_id, j.c.id == job_id)).first()
        if row is None:
            raise JobNotFound(job_id)
        error_rows = conn.execute(
            select(it.c.lead_index, it.c.feature, it.c.error_code, it.c.error)
            .where(it.c.team_id == team_id, it.c.job_id == job_id, it.c.state == "error")
            .order_by(it.c.lead_index, it.c.feature)
            .limit(MAX_ERRORS_SHOWN)
        )
        errors = tuple(_job_error(r) for r in error_rows)
        stats: dict[str, dict[str, int]] = dict(row.sample_stats or {})
        rates = {
            f: round(s["billable"] / s["sampled"], 4) for f, s in stats.items() if s["sampled"]
        }
        return EnrichmentJob(
            id=row.id,
            team_id=row.team_id,
            kind=row.kind,
            status=row.status,
            pause_reason=row.pause_reason,
            features=tuple(row.features),
            provider=row.provider,
            member_id=row.member_id,
            api_key_id=row.api_key_id,
            leads=row.leads,
            total=row.total,
            processed=row.processed,
            found=row.found,
            errors_count=row.errors,
            credits_spent=row.credits_spent,
            credits_needed=row.credits_needed,
            credit_limit=row.credit_limit,
            estimate=Estimate(row.max_credits, row.expected_credits, row.sample_size, rates),
            errors=errors,
            created_at=row.created_at,
            updated_at=row.updated_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
        )

    # ---- resume, cancel, recovery --------------------------------------------------

    def resume(
        self, team_id: str, job_id: str, *, credit_limit: int | None = None
    ) -> EnrichmentJob:
        """Put a paused (or crashed) job back in the queue; the caller or worker runs it.

        Raising ``credit_limit`` is how a job paused by its limit goes on. A queued
        job is left as it is; a running one is taken over once its runner's lease
        has run out, and refused with ``JobStillOwned`` (how long to wait) before.
        """
        _check_limit(credit_limit)
        now = self.kernel.clock.now()
        with self.kernel.uow() as uow:
            uow.lock_team(team_id)
            row = self._job_row(uow.conn, team_id, job_id)
            if row.status in ("completed", "cancelled"):
                raise JobStateConflict(
                    f"job {job_id} is {row.status}; only a paused job can be resumed",
                    job_id=job_id,
                    status=row.status,
                )
            values: dict[str, Any] = {"updated_at": now}
            if credit_limit is not None:
                values["credit_limit"] = credit_limit
            requeue = {"status": "queued", "pause_reason": None, "credits_needed": None,
                       "runner": None, "estimate_only": False}  # fmt: skip
            if row.status == "running":
                cutoff = now - self.options.stale_after
                if not leases.end_expired_lease(
                    uow.conn, team_id, job_id, expired_before=cutoff, values=values | requeue
                ):
                    raise self._refusal(uow.conn, team_id, job_id, now)
            else:
                changes = values | requeue if row.status == "paused" else values
                self._update_job(uow.conn, team_id, job_id, changes)
            uow.commit()
        return self.get_job(team_id, job_id)

    def cancel(self, team_id: str, job_id: str) -> EnrichmentJob:
        """Stop a job: pending items are cancelled; held ones are released here, unless a
        live runner has them in flight (it settles them, then stops)."""
        now = self.kernel.clock.now()
        with self.kernel.uow() as uow:
            row = self._job_row(uow.conn, team_id, job_id)
            if row.status in ("completed", "cancelled"):
                raise JobStateConflict(
                    f"job {job_id} is already {row.status}", job_id=job_id, status=row.status
                )
            live_runner = row.status == "running" and not self._stale(row, now)
            held = [] if live_runner else self._held_hold_ids(uow.conn, team_id, job_id)

        def apply(book: TeamBook, uow: SqlUnitOfWork) -> _Step:
            conn = uow.conn
            current = self._job_row(conn, team_id, job_id)
            if current.status in ("completed", "cancelled"):
                raise JobStateConflict(
                    f"job {job_id} is already {current.status}",
                    job_id=job_id,
                    status=current.status,
                )
            it = enrichment_items
            conn.execute(
                update(it)
                .where(it.c.team_id == team_id, it.c.job_id == job_id, it.c.state == "pending")
                .values(state="cancelled")
            )
            rows = []
            for item in self._held_items(conn, team_id, job_id, held):
                hold = book.holds.get(item.hold_id)
                if hold is not None and hold.status is HoldStatus.ACTIVE:
                    book.release(
                        hold,
                        expired=hold.is_past_ttl(book.now),
                        idempotency_key=_item_key(
                            job_id, item.lead_index, item.feature, "release", item.attempt
                        ),
                    )
                rows.append(_done_row(team_id, job_id, item, state="cancelled"))
            if rows:
                _update_items(uow, _ITEM_DONE, rows)
            self._update_job(
                conn,
                team_id,
                job_id,
                {"status": "cancelled", "pause_reason": None, "credits_needed": None,
                 "finished_at": book.now, "updated_at": book.now},
            )  # fmt: skip
            return _Step({})

        self.kernel.transact(team_id, "enrichment.cancel", {}, None, apply, _Step, hold_ids=held)
        return self.get_job(team_id, job_id)

    def recover_interrupted(self, *, stale_after: timedelta | None = None) -> list[str]:
        """Pause (reason ``interrupted``, with the ``job_paused`` alert) every running job
        whose runner's lease has run out; returns their ids.

        The server's job worker calls this when it starts and on every poll; a
        scheduler may call it too (``creditbook jobs recover``). The jobs are not
        resumed by themselves (see the decision record): resuming is one call,
        and their held items are reconciled then.
        """
        now = self.kernel.clock.now()
        cutoff = now - (self.options.stale_after if stale_after is None else stale_after)
        with self.kernel.uow() as uow:
            orphans = leases.orphaned_jobs(uow.conn, expired_before=cutoff)
        paused = {"status": "paused", "pause_reason": INTERRUPTED, "credits_needed": None,
                  "updated_at": now}  # fmt: skip
        recovered = []
        for team_id, job_id in orphans:
            with self.kernel.uow() as uow:
                uow.lock_team(team_id)
                row = self._job_row(uow.conn, team_id, job_id)
                if not leases.end_expired_lease(
                    uow.conn, team_id, job_id, expired_before=cutoff, values=paused
                ):
                    continue  # its runner renewed, or someone took it over meanwhile
                self._alert_paused(uow, row, INTERRUPTED, None)
                uow.commit()
            recovered.append(job_id)
        return recovered

    def queued_jobs(self) -> list[tuple[str, str]]:
        """(team, job) of every queued job, oldest first: what a worker should run."""
        j = enrichment_jobs
        with self.kernel.uow() as uow:
            rows = uow.conn.execute(
                select(j.c.team_id, j.c.id).where(j.c.status == "queued").order_by(j.c.id)
            ).all()
        return [(r.team_id, r.id) for r in rows]

    def auto_resume_ready(self) -> list[tuple[str, str]]:
        """Resume the jobs paused for credits of teams that opted in, once the next item
        is affordable again; returns the (team, job) resumed."""
        j, s = enrichment_jobs, enrichment_settings
        with self.kernel.uow() as uow:
            rows = uow.conn.execute(
                select(j.c.team_id, j.c.id)
                .join(s, s.c.team_id == j.c.team_id)
                .where(
                    j.c.status == "paused",
                    j.c.pause_reason == INSUFFICIENT_CREDITS,
                    s.c.auto_resume.is_(True),
                )
            ).all()
        resumed = []
        for team_id, job_id in rows:
            feature = self._next_pending_feature(team_id, job_id)
            if feature is None or self.spending.available(team_id, feature) >= self.cost(feature):
                self.resume(team_id, job_id)
                resumed.append((team_id, job_id))
        return resumed

    def _next_pending_feature(self, team_id: str, job_id: str) -> str | None:
        it = enrichment_items
        with self.kernel.uow() as uow:
            found = uow.conn.execute(
                select(it.c.feature)
                .where(it.c.team_id == team_id, it.c.job_id == job_id, it.c.state == "pending")
                .order_by(it.c.lead_index, it.c.feature)
                .limit(1)
            ).scalar()
        return str(found) if found is not None else None

    # ---- team settings --------------------------------------------------------------

    def set_team_settings(
        self,
        team_id: str,
        *,
        auto_resume: bool | None = None,
        dedupe_window_days: int | None = None,
    ) -> dict[str, Any]:
        """Opt a team in to automatic resume, or set its dedupe window (0 turns it off)."""
        if dedupe_window_days is not None and (
            isinstance(dedupe_window_days, bool) or not 0 <= dedupe_window_days <= 3650
        ):
            raise InvalidInput(
                "dedupe_window_days is a whole number of days from 0 to 3650",
                field="dedupe_window_days",
            )
        now = self.kernel.clock.now()
        s = enrichment_settings
        with self.kernel.uow() as uow:
            uow.lock_team(team_id)
            row = uow.conn.execute(select(s).where(s.c.team_id == team_id)).first()
            values: dict[str, Any] = {"updated_at": now}
            if auto_resume is not None:
                values["auto_resume"] = bool(auto_resume)
            if dedupe_window_days is not None:
                values["dedupe_window_days"] = dedupe_window_days
            if row is None:
                values.setdefault("auto_resume", False)
                uow.conn.execute(insert(s).values(team_id=team_id, **values))
            else:
                uow.conn.execute(update(s).where(s.c.team_id == team_id).values(**values))
            uow.commit()
        return self.team_settings(team_id)

    def team_settings(self, team_id: str) -> dict[str, Any]:
        s = enrichment_settings
        with self.kernel.uow() as uow:
            if uow.get_team(team_id) is None:
                raise TeamNotFound(team_id)
            row = uow.conn.execute(select(s).where(s.c.team_id == team_id)).first()
        default_days = self.options.dedupe_window.days
        if row is None:
            return {"auto_resume": False, "dedupe_window_days": default_days}
        days = row.dedupe_window_days
        return {
            "auto_resume": bool(row.auto_resume),
            "dedupe_window_days": default_days if days is None else days,
        }

    # ---- running --------------------------------------------------------------------

    def run_sync(
        self,
        team_id: str,
        job_id: str,
        *,
        progress: ProgressCallback | None = None,
    ) -> EnrichmentJob:
        """``run`` on a fresh event loop, for scripts and the CLI."""
        return asyncio.run(self.run(team_id, job_id, progress=progress))

    async def run(
        self,
        team_id: str,
        job_id: str,
        *,
        progress: ProgressCallback | None = None,
    ) -> EnrichmentJob:
        """Run a queued job until it completes, pauses or is cancelled.

        The database work runs in a thread so the event loop keeps the provider
        calls of this and other jobs moving.
        """
        token = new_id("run")
        job = await asyncio.to_thread(self._claim, team_id, job_id, token)
        registry = self.providers[job.provider or "default"]()
        chunk = self.options.chunk_size
        keeper = asyncio.ensure_future(
            keep_lease(
                lambda: self._renew_lease(team_id, job_id, token),
                renew_every(self.options.stale_after),
            )
        )
        try:
            await self._reconcile(team_id, job_id, token, registry, progress)
            size = chunk
            while True:
                try:
                    step = await asyncio.to_thread(self._reserve, team_id, job_id, token, size)
                except CapExceeded as exc:
                    if size > 1:
                        size = 1  # find the exact item the cap stops at
                        continue
                    reason = exc.code  # MEMBER_CAP or KEY_CAP
                    await asyncio.to_thread(
                        self._pause, team_id, job_id, token, reason, exc.details.get("needed")
                    )
                    break
                size = chunk
                kind = step.payload["kind"]
                if kind in ("stop", "paused", "completed"):
                    break
                if kind == "reconcile":
                    await self._reconcile(team_id, job_id, token, registry, progress)
                    continue
                work = [_work_from(w) for w in step.payload.get("work", [])]
                if work:
                    outcomes = await self._lookup_all(registry, work)
                    step = await asyncio.to_thread(self._settle, team_id, job_id, outcomes)
                if progress is not None and "progress" in step.payload:
                    progress(JobProgress(**step.payload["progress"]))
        except BaseException:
            # Ctrl-C, a database error: the job must not look alive; held items
            # are reconciled by the next resume.
            with contextlib.suppress(Exception):  # the original error matters more
                await asyncio.shield(
                    asyncio.to_thread(self._pause, team_id, job_id, token, INTERRUPTED, None)
                )
            raise
        finally:
            keeper.cancel()
            await registry.aclose()
        final = await asyncio.to_thread(self.get_job, team_id, job_id)
        if final.status == "paused" and final.pause_reason != INTERRUPTED:
            self._notify_paused(final)
        if progress is not None:
            progress(_progress_of(final))
        return final

    async def _reconcile(
        self,
        team_id: str,
        job_id: str,
        token: str,
        registry: ProviderRegistry,
        progress: ProgressCallback | None,
    ) -> None:
        """Settle items a dead run left ``held``: look them up again, then capture or release
        (an expired hold sends its item back to ``pending``: nothing was charged)."""
        while True:
            work = await asyncio.to_thread(self._held_work, team_id, job_id)
            if not work:
                return
            outcomes = await self._lookup_all(registry, work)
            step = await asyncio.to_thread(self._settle, team_id, job_id, outcomes)
            if progress is not None and "progress" in step.payload:
                progress(JobProgress(**step.payload["progress"]))

    async def _lookup_all(
        self, registry: ProviderRegistry, work: Sequence[_Work]
    ) -> list[_Outcome]:
        gate = asyncio.Semaphore(self.options.concurrency)

        async def one(item: _Work) -> _Outcome:
            async with gate:
                try:
                    result = await registry.lookup(item.feature, Lead.from_mapping(item.lead))
                    return _Outcome(item, result, None)
                except CreditbookError as exc:
                    return _Outcome(item, None, exc.message)
                except Exception as exc:  # a provider bug must release its hold, not leak it
                    return _Outcome(item, None, f"{type(exc).__name__}: {exc}")

        return list(await asyncio.gather(*(one(w) for w in work)))

    # ---- the transactions ------------------------------------------------------------

    def _claim(self, team_id: str, job_id: str, token: str) -> EnrichmentJob:
        now = self.kernel.clock.now()
        with self.kernel.uow() as uow:
            uow.lock_team(team_id)
            row = self._job_row(uow.conn, team_id, job_id)
            if not leases.take_lease(
                uow.conn,
                team_id,
                job_id,
                token=token,
                now=now,
                expired_before=now - self.options.stale_after,
                values={"pause_reason": None, "credits_needed": None, "updated_at": now,
                        "started_at": row.started_at or now},
            ):  # fmt: skip
                raise self._refusal(uow.conn, team_id, job_id, now)
            uow.commit()
        return self.get_job(team_id, job_id)

    def _refusal(
        self, conn: Connection, team_id: str, job_id: str, now: datetime
    ) -> JobStateConflict:
        """Why the job cannot be taken now (read again: the refused write saw it so)."""
        row = self._job_row(conn, team_id, job_id)
        if row.status == "running":
            return still_owned(job_id, row.heartbeat_at, now, self.options.stale_after)
        hint = " resume it first" if row.status == "paused" else ""
        return JobStateConflict(
            f"job {job_id} is {row.status} and cannot be run now;{hint}".rstrip(";"),
            job_id=job_id,
            status=row.status,
        )

    def _renew_lease(self, team_id: str, job_id: str, token: str) -> bool:
        with self.kernel.uow() as uow:
            kept = leases.renew_lease(
                uow.conn, team_id, job_id, token=token, now=self.kernel.clock.now()
            )
            uow.commit()
        return kept

    def _pause(
        self, team_id: str, job_id: str, token: str, reason: str, needed: int | None
    ) -> None:
        now = self.kernel.clock.now()
        with self.kernel.uow() as uow:
            uow.lock_team(team_id)
            row = self._job_row(uow.conn, team_id, job_id)
            if row.status != "running" or row.runner != token:
                return
            if reason != INTERRUPTED:
                self._alert_paused(uow, row, reason, needed)
            self._update_job(
                uow.conn,
                team_id,
                job_id,
                {"status": "paused", "pause_reason": reason, "credits_needed": needed,
                 "runner": None, "updated_at": now},
            )  # fmt: skip
            uow.commit()

    def _reserve(self, team_id: str, job_id: str, token: str, size: int) -> _Step:
        def apply(book: TeamBook, uow: SqlUnitOfWork) -> _Step:
            conn = uow.conn
            job = self._job_row(conn, team_id, job_id)
            if job.status != "running" or job.runner != token:
                return _Step({"kind": "stop"})
            now = book.now
            it = enrichment_items
            sampling = job.sample_size is not None and not job.sample_done
            query = select(it.c.lead_index, it.c.feature, it.c.fingerprint, it.c.attempt).where(
                it.c.team_id == team_id, it.c.job_id == job_id, it.c.state == "pending"
            )
            if sampling:
                query = query.where(it.c.lead_index < job.sample_size)
            rows = conn.execute(query.order_by(it.c.lead_index, it.c.feature).limit(size)).all()
            if not rows:
                return self._end_of_scope(conn, book, job, sampling)
            hits = self._cache_hits(conn, team_id, rows, now)
            actor = Actor(member_id=job.member_id, api_key_id=job.api_key_id, job_id=job_id)
            budget = None if job.credit_limit is None else job.credit_limit - job.credits_spent
            reserved = 0
            seen: set[tuple[str, str]] = set()
            cached_rows: list[dict[str, Any]] = []
            held_rows: list[dict[str, Any]] = []
            found = 0
            stop: tuple[str, str] | None = None
            for row in rows:
                key = (row.fingerprint, row.feature)
                hit = hits.get(key)
                if hit is not None:
                    cached_rows.append(
                        _result_row(team_id, job_id, row.lead_index, row.feature, row.attempt,
                                    "done", hit.outcome, hit.value, hit.data, 0, "cache", None,
                                    None)
                    )  # fmt: skip
                    if self.kernel.catalog.feature(row.feature).is_billable(hit.outcome):
                        found += 1
                    continue
                if key in seen:
                    continue  # the same lead again in this step: the cache answers it next step
                cost = self.cost(row.feature)
                if budget is not None and reserved + cost > budget:
                    stop = (CREDIT_LIMIT, row.feature)
                    break
                try:
                    hold = book.hold(
                        row.feature,
                        ttl_seconds=self.options.hold_ttl_seconds,
                        actor=actor,
                        idempotency_key=_item_key(
                            job_id, row.lead_index, row.feature, "hold", row.attempt
                        ),
                    )
                except InsufficientCredits:
                    stop = (INSUFFICIENT_CREDITS, row.feature)
                    break
                reserved += cost
                seen.add(key)
                held_rows.append(
                    {"b_team": team_id, "b_job": job_id, "b_lead": row.lead_index,
                     "b_feature": row.feature, "b_hold": hold.id, "attempt": row.attempt}
                )  # fmt: skip
            if stop is not None and not held_rows and not cached_rows:
                reason, feature = stop
                needed = self._credits_needed(conn, book, job, reason, feature)
                self._alert_paused(uow, job, reason, needed)
                self._update_job(
                    conn,
                    team_id,
                    job_id,
                    {"status": "paused", "pause_reason": reason, "credits_needed": needed,
                     "runner": None, "updated_at": now},
                )  # fmt: skip
                return _Step({"kind": "paused"})
            if cached_rows:
                _update_items(uow, _ITEM_DONE, cached_rows)
            if held_rows:
                _update_items(uow, _ITEM_HELD, held_rows)
            processed = job.processed + len(cached_rows)
            self._update_job(
                conn,
                team_id,
                job_id,
                {"processed": processed, "found": job.found + found,
                 "heartbeat_at": now, "updated_at": now},
            )  # fmt: skip
            leads = self._leads(conn, team_id, job_id, [r["b_lead"] for r in held_rows])
            work = [
                {"lead_index": r["b_lead"], "feature": r["b_feature"], "hold_id": r["b_hold"],
                 "attempt": r["attempt"], "lead": leads.get(r["b_lead"], {})}
                for r in held_rows
            ]  # fmt: skip
            return _Step(
                {
                    "kind": "work",
                    "work": work,
                    "progress": {
                        "job_id": job_id,
                        "status": "running",
                        "total": job.total,
                        "processed": processed,
                        "found": job.found + found,
                        "credits_spent": job.credits_spent,
                    },
                }
            )

        return self.kernel.transact(team_id, "enrichment.reserve", {}, None, apply, _Step)

    def _end_of_scope(self, conn: Connection, book: TeamBook, job: Any, sampling: bool) -> _Step:
        """No pending item left in scope: finish the sample, or the job."""
        it = enrichment_items
        now = book.now
        held = conn.execute(
            select(func.count())
            .select_from(it)
            .where(it.c.team_id == job.team_id, it.c.job_id == job.id, it.c.state == "held")
        ).scalar_one()
        if held:
            return _Step({"kind": "reconcile"})
        if sampling:
            stats, expected = self._sample_estimate(conn, job)
            values: dict[str, Any] = {
                "sample_done": True,
                "sample_stats": stats,
                "expected_credits": expected,
                "updated_at": now,
            }
            if job.estimate_only:
                values.update(status="paused", pause_reason=ESTIMATE_ONLY, runner=None)
            self._update_job(conn, job.team_id, job.id, values)
            return _Step({"kind": "paused" if job.estimate_only else "continue"})
        self._update_job(
            conn,
            job.team_id,
            job.id,
            {"status": "completed", "runner": None, "finished_at": now, "updated_at": now,
             "credits_needed": None},
        )  # fmt: skip
        return _Step({"kind": "completed"})

    def _sample_estimate(self, conn: Connection, job: Any) -> tuple[dict[str, Any], int]:
        """Billable rate per feature in the sample, and the expected cost of the whole job:
        what was spent plus, for each pending item, its cost times its feature's rate."""
        it = enrichment_items
        sampled: dict[str, dict[str, int]] = {
            f: {"sampled": 0, "billable": 0} for f in job.features
        }
        for feature, outcome, count in conn.execute(
            select(it.c.feature, it.c.outcome, func.count())
            .where(
                it.c.team_id == job.team_id,
                it.c.job_id == job.id,
                it.c.lead_index < job.sample_size,
                it.c.state == "done",
            )
            .group_by(it.c.feature, it.c.outcome)
        ):
            stats = sampled.setdefault(feature, {"sampled": 0, "billable": 0})
            stats["sampled"] += count
            if outcome and self.kernel.catalog.feature(feature).is_billable(outcome):
                stats["billable"] += count
        rest = Fraction(0)
        for feature, count in self._pending_by_feature(conn, job.team_id, job.id).items():
            s = sampled.get(feature, {"sampled": 0, "billable": 0})
            rate = Fraction(s["billable"], s["sampled"]) if s["sampled"] else Fraction(1)
            rest += rate * count * self.cost(feature)
        return sampled, int(job.credits_spent) + math.ceil(rest)

    def _credits_needed(
        self, conn: Connection, book: TeamBook, job: Any, reason: str, feature: str
    ) -> int:
        """Credits to add (or limit to raise) so the rest can finish even if every item bills."""
        remaining = sum(
            count * self.cost(f)
            for f, count in self._pending_by_feature(conn, job.team_id, job.id).items()
        )
        if reason == CREDIT_LIMIT:
            room = int(job.credit_limit) - int(job.credits_spent)
        else:
            room = book.available_for(feature)
        return max(remaining - room, self.cost(feature) - room, 1)

    def _settle(self, team_id: str, job_id: str, outcomes: Sequence[_Outcome]) -> _Step:
        hold_ids = [o.work.hold_id for o in outcomes]

        def apply(book: TeamBook, uow: SqlUnitOfWork) -> _Step:
            conn = uow.conn
            job = self._job_row(conn, team_id, job_id)
            still_held = {r.hold_id for r in self._held_items(conn, team_id, job_id, hold_ids)}
            rows: list[dict[str, Any]] = []
            cache_rows: list[dict[str, Any]] = []
            processed = found = spent = errors = 0
            now = book.now
            for o in outcomes:
                w = o.work
                if w.hold_id not in still_held:
                    continue  # settled by someone else (a cancel): never twice
                hold = book.holds.get(w.hold_id)
                if hold is None or not _usable(hold, now):
                    if hold is not None and hold.status is HoldStatus.ACTIVE:
                        book.release(hold, expired=True)
                    # The hold ran out before we could settle: nothing was charged,
                    # so the item simply goes round again with a new attempt number.
                    rows.append(
                        _result_row(team_id, job_id, w.lead_index, w.feature, w.attempt + 1,
                                    "pending", None, None, None, 0, None, None, None)
                    )  # fmt: skip
                    continue
                processed += 1
                result = o.result
                if result is None:
                    book.release(
                        hold,
                        idempotency_key=_item_key(
                            job_id, w.lead_index, w.feature, "release", w.attempt
                        ),
                    )
                    errors += 1
                    rows.append(
                        _result_row(team_id, job_id, w.lead_index, w.feature, w.attempt,
                                    "error", None, None, None, 0, None, PROVIDER_ERROR,
                                    (o.error or "")[:500])
                    )  # fmt: skip
                    continue
                billable = self.kernel.catalog.feature(w.feature).is_billable(result.outcome)
                credits = 0
                if billable:
                    charged = book.capture(
                        hold,
                        outcome=result.outcome,
                        idempotency_key=_item_key(
                            job_id, w.lead_index, w.feature, "capture", w.attempt
                        ),
                    )
                    credits = charged.credits
                    found += 1
                    spent += credits
                    cache_rows.append(
                        {"team_id": team_id, "fingerprint": Lead.from_mapping(w.lead).fingerprint(),
                         "feature": w.feature, "outcome": result.outcome, "value": result.value,
                         "data": dict(result.data), "provider": result.provider,
                         "credits": credits, "job_id": job_id, "cached_at": now}
                    )  # fmt: skip
                else:
                    book.release(
                        hold,
                        idempotency_key=_item_key(
                            job_id, w.lead_index, w.feature, "release", w.attempt
                        ),
                    )
                rows.append(
                    _result_row(team_id, job_id, w.lead_index, w.feature, w.attempt, "done",
                                result.outcome, result.value, dict(result.data), credits,
                                result.provider, None, None)
                )  # fmt: skip
            if rows:
                _update_items(uow, _ITEM_DONE, rows)
            if cache_rows:
                self._upsert_cache(conn, uow.dialect, cache_rows)
            counters = {
                "processed": job.processed + processed,
                "found": job.found + found,
                "credits_spent": job.credits_spent + spent,
                "errors": job.errors + errors,
            }
            self._update_job(
                conn, team_id, job_id, {**counters, "heartbeat_at": now, "updated_at": now}
            )
            return _Step(
                {
                    "kind": "settled",
                    "progress": {
                        "job_id": job_id,
                        "status": job.status,
                        "total": job.total,
                        "processed": counters["processed"],
                        "found": counters["found"],
                        "credits_spent": counters["credits_spent"],
                    },
                }
            )

        return self.kernel.transact(
            team_id, "enrichment.settle", {}, None, apply, _Step, hold_ids=hold_ids
        )

    # ---- queries ----------------------------------------------------------------------

    def _job_row(self, conn: Connection, team_id: str, job_id: str) -> Any:
        j = enrichment_jobs
        row = conn.execute(select(j).where(j.c.team_id == team_id, j.c.id == job_id)).first()
        if row is None:
            raise JobNotFound(job_id)
        return row

    def _update_job(
        self, conn: Connection, team_id: str, job_id: str, values: Mapping[str, Any]
    ) -> None:
        j = enrichment_jobs
        conn.execute(update(j).where(j.c.team_id == team_id, j.c.id == job_id).values(**values))

    def _stale(self, row: Any, now: datetime, stale_after: timedelta | None = None) -> bool:
        stale = self.options.stale_after if stale_after is None else stale_after
        beat: datetime | None = row.heartbeat_at
        return beat is None or beat <= now - stale

    def _held_hold_ids(self, conn: Connection, team_id: str, job_id: str) -> list[str]:
        it = enrichment_items
        return [
            str(r.hold_id)
            for r in conn.execute(
                select(it.c.hold_id).where(
                    it.c.team_id == team_id, it.c.job_id == job_id, it.c.state == "held"
                )
            )
        ]

    def _held_items(
        self, conn: Connection, team_id: str, job_id: str, hold_ids: Sequence[str]
    ) -> list[Any]:
        if not hold_ids:
            return []
        it = enrichment_items
        found: list[Any] = []
        for start in range(0, len(hold_ids), 1000):
            found.extend(
                conn.execute(
                    select(it.c.lead_index, it.c.feature, it.c.hold_id, it.c.attempt).where(
                        it.c.team_id == team_id,
                        it.c.job_id == job_id,
                        it.c.state == "held",
                        it.c.hold_id.in_(hold_ids[start : start + 1000]),
                    )
                )
            )
        return found

    def _held_work(self, team_id: str, job_id: str) -> list[_Work]:
        it = enrichment_items
        with self.kernel.uow() as uow:
            rows = uow.conn.execute(
                select(it.c.lead_index, it.c.feature, it.c.hold_id, it.c.attempt)
                .where(it.c.team_id == team_id, it.c.job_id == job_id, it.c.state == "held")
                .order_by(it.c.lead_index, it.c.feature)
                .limit(self.options.chunk_size)
            ).all()
            leads = self._leads(uow.conn, team_id, job_id, [r.lead_index for r in rows])
        return [
            _Work(r.lead_index, r.feature, r.hold_id, r.attempt, leads.get(r.lead_index, {}))
            for r in rows
        ]

    def _leads(
        self, conn: Connection, team_id: str, job_id: str, indexes: Sequence[int]
    ) -> dict[int, dict[str, Any]]:
        wanted = sorted(set(indexes))
        if not wanted:
            return {}
        le = enrichment_leads
        rows = conn.execute(
            select(le.c.lead_index, le.c.data).where(
                le.c.team_id == team_id,
                le.c.job_id == job_id,
                le.c.lead_index.between(wanted[0], wanted[-1]),
            )
        )
        chosen = set(wanted)
        return {r.lead_index: dict(r.data) for r in rows if r.lead_index in chosen}

    def _pending_by_feature(self, conn: Connection, team_id: str, job_id: str) -> dict[str, int]:
        it = enrichment_items
        return {
            str(f): int(c)
            for f, c in conn.execute(
                select(it.c.feature, func.count())
                .where(it.c.team_id == team_id, it.c.job_id == job_id, it.c.state == "pending")
                .group_by(it.c.feature)
            )
        }

    def _window(self, conn: Connection, team_id: str) -> timedelta:
        s = enrichment_settings
        days = conn.execute(select(s.c.dedupe_window_days).where(s.c.team_id == team_id)).scalar()
        return self.options.dedupe_window if days is None else timedelta(days=int(days))

    def _cache_hits(
        self, conn: Connection, team_id: str, rows: Sequence[Any], now: datetime
    ) -> dict[tuple[str, str], Any]:
        window = self._window(conn, team_id)
        if window <= timedelta(0):
            return {}
        c = enrichment_lead_cache
        prints = sorted({r.fingerprint for r in rows})
        found = conn.execute(
            select(c.c.fingerprint, c.c.feature, c.c.outcome, c.c.value, c.c.data).where(
                c.c.team_id == team_id,
                c.c.fingerprint.in_(prints),
                c.c.cached_at > now - window,
            )
        )
        return {(r.fingerprint, r.feature): r for r in found}

    def _upsert_cache(self, conn: Connection, dialect: str, rows: list[dict[str, Any]]) -> None:
        c = enrichment_lead_cache
        stmt = postgresql.insert(c) if dialect == "postgresql" else sqlite.insert(c)
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        for row in rows:
            latest[(row["fingerprint"], row["feature"])] = row
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[c.c.team_id, c.c.fingerprint, c.c.feature],
                set_={name: stmt.excluded[name] for name in _CACHE_UPDATED},
            ),
            list(latest.values()),
        )

    # ---- results ----------------------------------------------------------------------

    def results(self, team_id: str, job_id: str) -> list[LeadResult]:
        """One entry per lead, with each feature's state, outcome, value and credits."""
        it, le = enrichment_items, enrichment_leads
        with self.kernel.uow() as uow:
            self._job_row(uow.conn, team_id, job_id)
            leads = {
                r.lead_index: dict(r.data)
                for r in uow.conn.execute(
                    select(le.c.lead_index, le.c.data).where(
                        le.c.team_id == team_id, le.c.job_id == job_id
                    )
                )
            }
            items: dict[int, dict[str, ItemResult]] = {}
            for r in uow.conn.execute(
                select(it).where(it.c.team_id == team_id, it.c.job_id == job_id)
            ):
                items.setdefault(r.lead_index, {})[r.feature] = ItemResult(
                    feature=r.feature,
                    state=r.state,
                    outcome=r.outcome,
                    value=r.value,
                    credits=int(r.credits),
                    provider=r.provider,
                    error_code=r.error_code,
                    data=dict(r.data or {}),
                )
        return [LeadResult(i, leads[i], items.get(i, {})) for i in sorted(leads)]

    def results_csv(self, team_id: str, job_id: str) -> str:
        """The results as CSV: the lead's fields, then status/value/credits per feature."""
        job = self.get_job(team_id, job_id)
        out = io.StringIO()
        writer = csv_writer(out)
        header = ["lead_index", *LEAD_FIELDS]
        for f in job.features:
            header += [f"{f}_status", f"{f}_value", f"{f}_credits", f"{f}_source"]
        writer.writerow(header)
        for lead in self.results(team_id, job_id):
            row: list[Any] = [lead.lead_index, *(lead.lead.get(k, "") for k in LEAD_FIELDS)]
            for f in job.features:
                item = lead.items.get(f)
                if item is None:
                    row += ["", "", 0, ""]
                    continue
                row += [item.status, item.value or "", item.credits, item.provider or ""]
            writer.writerow(row)
        return out.getvalue()

    # ---- one lead, lemlist style -------------------------------------------------------

    def enrich_one(
        self,
        team_id: str,
        lead: Mapping[str, Any],
        features: Sequence[str],
        *,
        member_id: str | None = None,
        api_key_id: str | None = None,
    ) -> EnrichmentJob:
        """A one-lead job (``POST /api/enrich``); run it like any job."""
        return self.create_job(
            team_id, [lead], features, member_id=member_id, api_key_id=api_key_id, kind="single"
        )

    # ---- AI variables ------------------------------------------------------------------

    async def generate_ai_variable(
        self,
        team_id: str,
        prompt: str,
        lead: Mapping[str, Any],
        *,
        actor: Actor = SYSTEM,
        provider: str | None = None,
        idempotency_key: str | None = None,
    ) -> AiVariableResult:
        """Hold 1 request's credits, generate, capture on success, release on failure."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidInput("prompt is a non-empty text", field="prompt")
        if len(prompt) > 20_000:
            raise InvalidInput("prompt is at most 20000 characters", field="prompt")
        if provider is not None and provider not in self.providers:
            raise InvalidInput(
                f"unknown provider {provider!r}; valid: {', '.join(sorted(self.providers))}",
                field="provider",
            )
        key = idempotency_key
        held = await asyncio.to_thread(
            self.spending.hold,
            team_id,
            AI_VARIABLE,
            actor=actor,
            idempotency_key=f"{key}:hold" if key else None,
        )
        registry = self.providers[provider or "default"]()
        try:
            result: Result | None = await registry.lookup(
                AI_VARIABLE, Lead.from_mapping(lead), prompt=prompt
            )
        except CreditbookError:
            result = None
        finally:
            await registry.aclose()
        if result is not None and self.kernel.catalog.feature(AI_VARIABLE).is_billable(
            result.outcome
        ):
            charged = await asyncio.to_thread(
                self.spending.capture,
                team_id,
                held.hold_id,
                outcome=result.outcome,
                idempotency_key=f"{key}:capture" if key else None,
            )
            return AiVariableResult(
                result.value, result.outcome, charged.credits, held.hold_id, charged.charge_id,
                result.provider,
            )  # fmt: skip
        await asyncio.to_thread(
            self.spending.release,
            team_id,
            held.hold_id,
            idempotency_key=f"{key}:release" if key else None,
        )
        outcome = result.outcome if result is not None else "failed"
        return AiVariableResult(
            None, outcome, 0, held.hold_id, None, result.provider if result else ""
        )

    # ---- notifications -------------------------------------------------------------------

    def _notify_paused(self, job: EnrichmentJob) -> None:
        for listener in list(self.pause_listeners):
            try:
                listener(job)
            except Exception:  # an alert must never fail the job
                continue

    def _alert_paused(self, uow: SqlUnitOfWork, job: Any, reason: str, needed: int | None) -> None:
        """Record the "enrichment job paused" alert in the pausing transaction: it exists
        exactly when the pause does, once per pause."""
        self.notifications.record(
            uow,
            job.team_id,
            AlertKind.JOB_PAUSED.value,
            {
                "job_id": job.id,
                "reason": reason,
                "credits_needed": needed,
                "processed": job.processed,
                "total": job.total,
                "member_id": job.member_id,
            },
        )


# ---- helpers ------------------------------------------------------------------------------

_SERVICES: WeakKeyDictionary[Kernel[Any], EnrichmentService] = WeakKeyDictionary()
_SERVICES_LOCK = threading.Lock()


class HasKernel(Protocol):
    """What ``enrichment_for`` accepts besides a kernel: an engine that has one (``Creditbook``)."""

    @property
    def kernel(self) -> Kernel[SqlUnitOfWork]: ...


def enrichment_for(owner: Kernel[SqlUnitOfWork] | HasKernel, **kwargs: Any) -> EnrichmentService:
    """The kernel's shared ``EnrichmentService`` (made on first use, configured from Settings).

    ``owner`` is the kernel, or an engine that has one (``enrichment_for(book)``).
    """
    kernel = owner if isinstance(owner, Kernel) else owner.kernel
    with _SERVICES_LOCK:
        service = _SERVICES.get(kernel)
        if service is None:
            service = EnrichmentService(kernel, **(kwargs or _from_settings(kernel.catalog)))
            _SERVICES[kernel] = service
        return service


def _from_settings(catalog: Catalog) -> dict[str, Any]:
    from creditbook.config import Settings

    settings = Settings()
    options = EnrichmentOptions(
        concurrency=settings.enrichment_concurrency,
        chunk_size=settings.enrichment_chunk_size,
        dedupe_window=timedelta(days=settings.enrichment_dedupe_days),
        stale_after=timedelta(seconds=settings.job_orphan_seconds),
    )
    providers: dict[str, RegistryFactory] = {}
    if settings.enrichment_providers is not None:
        providers["default"] = configured_registry_factory(catalog, settings.enrichment_providers)
    return {"options": options, "providers": providers}


class _NoSender:
    """The service only records alerts; the notification worker delivers them."""

    def send(
        self, url: str, body: bytes, headers: dict[str, str]
    ) -> SendResult:  # pragma: no cover
        raise RuntimeError("enrichment never delivers alerts itself")


def _check_limit(limit: int | None) -> None:
    check_credits(limit, "credit_limit")


def _new_item(
    team_id: str,
    job_id: str,
    index: int,
    feature: str,
    fingerprint: str,
    state: str = "pending",
    error_code: str | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    return {
        "team_id": team_id,
        "job_id": job_id,
        "lead_index": index,
        "feature": feature,
        "fingerprint": fingerprint,
        "state": state,
        "attempt": 0,
        "hold_id": None,
        "outcome": None,
        "value": None,
        "data": None,
        "credits": 0,
        "provider": None,
        "error_code": error_code,
        "error": error,
    }


def _result_row(
    team_id: str,
    job_id: str,
    lead_index: int,
    feature: str,
    attempt: int,
    state: str,
    outcome: str | None,
    value: str | None,
    data: Mapping[str, Any] | None,
    credits: int,
    provider: str | None,
    error_code: str | None,
    error: str | None,
) -> dict[str, Any]:
    return {
        "b_team": team_id,
        "b_job": job_id,
        "b_lead": lead_index,
        "b_feature": feature,
        "b_state": state,
        "b_hold": None,
        "b_attempt": attempt,
        "b_outcome": outcome,
        "b_value": value,
        "b_data": dict(data) if data is not None else None,
        "b_credits": credits,
        "b_provider": provider,
        "b_error_code": error_code,
        "b_error": error,
    }


def _done_row(team_id: str, job_id: str, item: Any, *, state: str) -> dict[str, Any]:
    return _result_row(
        team_id, job_id, item.lead_index, item.feature, item.attempt, state,
        None, None, None, 0, None, None, None,
    )  # fmt: skip


def _work_from(data: Mapping[str, Any]) -> _Work:
    return _Work(
        int(data["lead_index"]),
        str(data["feature"]),
        str(data["hold_id"]),
        int(data["attempt"]),
        dict(data["lead"]),
    )


def _usable(hold: Hold, now: datetime) -> bool:
    return hold.status is HoldStatus.ACTIVE and not hold.is_past_ttl(now)


def _job_error(row: Any) -> JobError:
    code = row.error_code or PROVIDER_ERROR
    if code == MISSING_INPUTS:
        missing = tuple((row.error or "").split(",")) if row.error else ()
        return JobError(
            row.lead_index,
            row.feature,
            code,
            f"lead {row.lead_index} lacks what {row.feature} needs: {', '.join(missing)}",
            missing,
        )
    return JobError(row.lead_index, row.feature, code, row.error or code)


def _progress_of(job: EnrichmentJob) -> JobProgress:
    return JobProgress(job.id, job.status, job.total, job.processed, job.found, job.credits_spent)


__all__ = [
    "AiVariableResult",
    "EnrichmentJob",
    "EnrichmentOptions",
    "EnrichmentService",
    "Estimate",
    "ItemResult",
    "JobError",
    "JobNotFound",
    "JobProgress",
    "JobStateConflict",
    "JobStillOwned",
    "LeadResult",
    "enrichment_for",
    "sandbox_registry_factory",
]
