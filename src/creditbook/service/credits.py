"""``Creditbook``: the facade of the credits engine, the typed Python API everything calls.

It is the spend and team use cases (``Spending``, ``Teams``: inherited, so
``book.charge`` calls the kernel with no layer in between) plus the area
services the composition root (``bootstrap.py``) wires and hands it: plans,
purchases, notifications, access, the sweeper. Every change of credits is
one team transaction of the kernel (``service/kernel.py``); group commit
batches them (``enable_group_commit``).

The HTTP API, the CLI and the dashboard are thin layers over this class.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Engine

from creditbook.adapters.db.audit import AuditReport
from creditbook.adapters.db.audit import audit as run_audit
from creditbook.adapters.db.committer import committer_io
from creditbook.adapters.db.repository import SqlUnitOfWork
from creditbook.domain.book import TeamBook
from creditbook.domain.catalog import Catalog
from creditbook.domain.clock import Clock
from creditbook.domain.errors import InvalidInput
from creditbook.service.access import AccessService
from creditbook.service.group_commit import GroupCommitter
from creditbook.service.kernel import Kernel
from creditbook.service.notifications import NotificationService
from creditbook.service.plans import Plans
from creditbook.service.ports import (
    AfterCommitHook,
    CatchUpStep,
    DueStep,
    RefusalHook,
    SpendGuard,
    UnitOfWorkFactory,
)
from creditbook.service.purchases import PurchaseService
from creditbook.service.receipts import (
    ChargeReceipt,
    Drawn,
    GrantReceipt,
    HoldReceipt,
    ReleaseReceipt,
    RevokeReceipt,
)
from creditbook.service.requests import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_WAIT_MS,
    MAX_KEY_LENGTH,
    Receipt,
    actor_dict,
    request_hash,
)
from creditbook.service.spending import LedgerPage, Spending
from creditbook.service.sweep import sweep_parallel
from creditbook.service.teams import Teams, check_email, check_time_zone

__all__ = [
    "MAX_KEY_LENGTH",
    "CatchUpStep",
    "ChargeReceipt",
    "Creditbook",
    "Drawn",
    "DueStep",
    "GrantReceipt",
    "HoldReceipt",
    "LedgerPage",
    "Receipt",
    "RefusalHook",
    "ReleaseReceipt",
    "RevokeReceipt",
    "SpendGuard",
    "UnitOfWorkFactory",
    "actor_dict",
    "check_email",
    "check_time_zone",
    "request_hash",
]

R = TypeVar("R", bound=Receipt)

# What ``tick(processes=N)`` runs in each spawned sweeper (``bootstrap.sweep_worker``).
SweepWorker = Callable[..., None]


class Creditbook(Spending, Teams):
    """The credits engine. Build one with ``creditbook.open()`` (or ``bootstrap.assemble``)."""

    def __init__(
        self,
        kernel: Kernel[SqlUnitOfWork],
        *,
        plans: Plans,
        purchases: PurchaseService,
        access: AccessService,
        engine: Engine | None = None,
        sweep_worker: SweepWorker | None = None,
    ) -> None:
        self.kernel = kernel
        self.engine = engine
        self._plans = plans
        self._purchases = purchases
        self.access = access
        self._sweep_worker = sweep_worker
        self.group_commit: GroupCommitter | None = None

    # ---- the kernel's parts ------------------------------------------------------

    @property
    def uow(self) -> Callable[[], SqlUnitOfWork]:
        return self.kernel.uow

    @property
    def catalog(self) -> Catalog:
        return self.kernel.catalog

    @property
    def clock(self) -> Clock:
        return self.kernel.clock

    @property
    def catch_up_steps(self) -> list[CatchUpStep[SqlUnitOfWork]]:
        return self.kernel.catch_up_steps

    @property
    def due_steps(self) -> list[DueStep[SqlUnitOfWork]]:
        return self.kernel.due_steps

    @property
    def spend_guards(self) -> list[SpendGuard[SqlUnitOfWork]]:
        return self.kernel.spend_guards

    @property
    def refusal_hooks(self) -> list[RefusalHook]:
        return self.kernel.refusal_hooks

    @property
    def after_commit_hooks(self) -> list[AfterCommitHook]:
        return self.kernel.after_commit_hooks

    @property
    def guards_read_caps(self) -> bool:
        return self.kernel.guards_read_caps

    def transact(
        self,
        team_id: str,
        operation: str,
        request: dict[str, Any],
        idempotency_key: str | None,
        apply: Callable[[TeamBook, SqlUnitOfWork], R],
        receipt_type: type[R],
        *,
        hold_ids: list[str] | None = None,
    ) -> R:
        """``Kernel.transact``: run ``apply`` on the team's up-to-date book, one transaction."""
        return self.kernel.transact(
            team_id, operation, request, idempotency_key, apply, receipt_type, hold_ids=hold_ids
        )

    def open_book(
        self,
        uow: SqlUnitOfWork,
        team_id: str,
        *,
        due_at: datetime | None = None,
        locked: bool = False,
        hold_ids: list[str] | None = None,
    ) -> tuple[TeamBook, bool]:
        """``Kernel.open_book``: lock the team, load its book, apply what is due."""
        return self.kernel.open_book(uow, team_id, due_at=due_at, locked=locked, hold_ids=hold_ids)

    def finish(
        self,
        uow: SqlUnitOfWork,
        book: TeamBook,
        *,
        ran_catch_up: bool,
        due_at: datetime | None = None,
    ) -> None:
        """``Kernel.finish``: write the book's changes, move the team's ``due_at``."""
        self.kernel.finish(uow, book, ran_catch_up=ran_catch_up, due_at=due_at)

    def catch_up(self, team_id: str) -> int:
        """Apply whatever is due for one team now; returns the entries written."""
        return self.kernel.catch_up(team_id)

    # ---- group commit ----------------------------------------------------------

    def enable_group_commit(
        self,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
        per_team: bool = False,
        on_loop: bool = False,
    ) -> GroupCommitter:
        """Coalesce concurrent charges, holds, captures and releases into shared transactions.

        Each call still returns only once its own transaction committed, with
        the same answers as without (see ``creditbook.service.group_commit``).
        ``max_batch`` bounds the commands per transaction; ``max_wait_ms`` bounds how
        long the committer waits, when the queue is empty, for callers the previous
        batch answered (a lone caller never waits; 0: never wait);
        ``per_team=True`` commits each team of a batch apart (one team per transaction);
        ``on_loop=True`` (PostgreSQL) batches the awaitable calls (``charge_async``
        & co.) on their own event loop, with an async connection per loop, instead
        of on the committer thread (``creditbook serve`` does: see decision 0008).
        """
        self.disable_group_commit()
        held, loop_io = committer_io(self.engine)
        group = GroupCommitter(
            self.kernel,
            held=held,
            loop_io=loop_io,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            per_team=per_team,
            on_loop=on_loop,
        )
        self.group_commit = self.kernel.batcher = group
        return group

    def disable_group_commit(self) -> None:
        """Answer whatever is queued, then go back to one transaction per call."""
        group, self.group_commit = self.group_commit, None
        self.kernel.batcher = None
        if group is not None:
            group.close()

    # ---- area services -----------------------------------------------------------

    @property
    def plans(self) -> Plans:
        """Plans, seats and billing periods (``creditbook.service.plans``)."""
        return self._plans

    @plans.setter
    def plans(self, service: Plans) -> None:
        self._plans = service

    @property
    def purchases(self) -> PurchaseService:
        """Buying credits, refunds, auto-recharge and alerts (``creditbook.service.purchases``)."""
        return self._purchases

    @purchases.setter
    def purchases(self, service: PurchaseService) -> None:
        self._purchases = service

    @property
    def notifications(self) -> NotificationService:
        """The team alerts: outbox, webhook delivery, in-app list; ``notify()`` for others."""
        return self._purchases.notifications

    # ---- the whole ledger ------------------------------------------------------------

    def audit(self, team_id: str | None = None) -> AuditReport:
        """Recompute every balance from the ledger; ``report.clean`` when all agree.

        On PostgreSQL the audit reads one REPEATABLE READ snapshot, so charges
        committing while it runs cannot make grants and postings look apart.
        (SQLite's transaction already holds the database lock.)
        """
        if self.engine is not None and self.engine.dialect.name == "postgresql":
            with self.engine.connect() as conn:
                conn.execution_options(isolation_level="REPEATABLE READ")
                with conn.begin():
                    return run_audit(conn, team_id)
        with self.uow() as uow:
            return run_audit(uow.conn, team_id)

    def tick(
        self,
        *,
        on_team: Callable[[str], None] | None = None,
        batch_size: int = 500,
        processes: int = 1,
    ) -> int:
        """Bring every team whose ``due_at`` has passed up to date; returns how many.

        Teams are swept in batches (see ``creditbook.service.sweep``).
        ``processes > 1`` runs that many sweeping processes at once on
        PostgreSQL; SQLite has one writer at a time, so there it is clamped to 1
        (with a warning logged).
        """
        if processes < 1:
            raise InvalidInput("processes must be at least 1", field="processes")
        if processes > 1 and not self.parallel_tick_supported():
            logging.getLogger(__name__).warning(
                "tick: %d processes asked, running 1: SQLite allows one writer at a time "
                "(parallel sweeping needs PostgreSQL)",
                processes,
            )
            processes = 1
        url = self.engine.url.render_as_string(hide_password=False) if self.engine else None
        return sweep_parallel(
            self.kernel,
            processes=processes,
            batch_size=batch_size,
            on_team=on_team,
            database_url=url if self.parallel_tick_supported() else None,
            worker_main=self._sweep_worker,
        )

    def parallel_tick_supported(self) -> bool:
        """Whether ``tick(processes=N)`` can run N sweepers (PostgreSQL only)."""
        return self.engine is not None and self.engine.dialect.name == "postgresql"
