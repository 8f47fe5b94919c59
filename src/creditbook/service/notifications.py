"""Alerts to team admins: a transactional outbox, signed webhook delivery, the in-app list.

An alert is a row of ``notifications`` written in the same transaction as
the change that caused it (``record``), so an alert exists if and only if
its cause was committed. ``notify`` is the same in a transaction of its own,
for callers outside a credits transaction (an enrichment job that paused).

Delivery (``deliver_due``, run by ``NotificationWorker`` or ``creditbook``
commands) posts each pending alert to the team's webhook URL, signed with
the team's secret (``Creditbook-Signature: t=<unix>,v1=<hex HMAC-SHA256 of
"t.body">``) and carrying its id (``Creditbook-Event-Id``) so a receiver
can deduplicate. A failed attempt is retried with exponential backoff
(``base_delay * 2**(attempts-1)``, capped) up to ``max_attempts``; a
destination the outbound-URL guard refuses (``adapters/net/guard.py``: a
private, loopback, link-local... address, or http where https is required)
fails at once with the guard's reason, nothing sent; a row is
claimed before it is sent, so two workers never post the same alert at the
same time, and a delivered row is never sent again. A team without a
webhook URL gets its alerts in-app only (status ``skipped``).

The team's billing settings (low-balance threshold, webhook, auto-recharge
and the alert states that make alerts fire once per crossing) live in
``billing_settings``; the row helpers are here because both the alert guard
and the purchase service use them.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, insert, or_, select, update

from creditbook.adapters.db.repository import SqlUnitOfWork
from creditbook.adapters.db.tables_purchases import billing_settings, notifications
from creditbook.adapters.net.guard import OutboundGuard
from creditbook.adapters.notify.base import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    WebhookSender,
    sign_body,
)
from creditbook.domain.clock import Clock
from creditbook.domain.errors import DatabaseUnavailable, InvalidInput, TeamNotFound
from creditbook.domain.ids import new_id
from creditbook.service.ports import UnitOfWorkFactory

MAX_PAGE = 500
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class AlertKind(StrEnum):
    """The alerts creditbook raises itself; ``notify`` accepts other lower_snake kinds too."""

    LOW_BALANCE = "low_balance"
    DEPLETED = "depleted"
    PURCHASE_COMPLETED = "purchase_completed"
    PURCHASE_FAILED = "purchase_failed"
    PURCHASE_REFUNDED = "purchase_refunded"
    AUTO_RECHARGE_FAILED = "auto_recharge_failed"
    JOB_PAUSED = "job_paused"


@dataclass(frozen=True, slots=True)
class Notification:
    id: str
    team_id: str
    kind: str
    payload: dict[str, Any]
    status: str
    attempts: int
    created_at: datetime
    delivered_at: datetime | None
    last_error: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "team_id": self.team_id,
            "kind": self.kind,
            "payload": self.payload,
            "status": self.status,
            "attempts": self.attempts,
            "created_at": self.created_at.isoformat(),
            "delivered_at": self.delivered_at.isoformat() if self.delivered_at else None,
            "last_error": self.last_error,
        }


@dataclass(slots=True)
class DeliveryReport:
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    skipped: int = 0
    ids: list[str] = field(default_factory=list)


# ---- billing settings rows -------------------------------------------------------


def settings_row(uow: SqlUnitOfWork, team_id: str) -> Any:
    """The team's ``billing_settings`` row, or None when it never set anything."""
    return uow.conn.execute(
        select(billing_settings).where(billing_settings.c.team_id == team_id)
    ).first()


def ensure_settings_row(uow: SqlUnitOfWork, team_id: str, now: datetime) -> Any:
    """The team's settings row, created with defaults when missing (call with the team locked)."""
    row = settings_row(uow, team_id)
    if row is None:
        uow.conn.execute(
            insert(billing_settings).values(
                team_id=team_id,
                auto_recharge_enabled=False,
                auto_recharge_cooldown_seconds=3600,
                below_threshold=False,
                depleted=False,
                recharge_armed=True,
                updated_at=now,
            )
        )
        row = settings_row(uow, team_id)
    return row


def update_settings_row(uow: SqlUnitOfWork, team_id: str, now: datetime, **values: Any) -> None:
    uow.conn.execute(
        update(billing_settings)
        .where(billing_settings.c.team_id == team_id)
        .values(updated_at=now, **values)
    )


def new_webhook_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


# ---- the service ---------------------------------------------------------------


def _notification(row: Any) -> Notification:
    return Notification(
        id=row.id,
        team_id=row.team_id,
        kind=row.kind,
        payload=dict(row.payload or {}),
        status=row.status,
        attempts=row.attempts,
        created_at=row.created_at,
        delivered_at=row.delivered_at,
        last_error=row.last_error,
    )


class NotificationService:
    """Writes alerts into the outbox, lists them, and delivers them to team webhooks."""

    def __init__(
        self,
        uow_factory: UnitOfWorkFactory[SqlUnitOfWork],
        clock: Clock,
        sender: WebhookSender | None = None,
        *,
        max_attempts: int = 10,
        base_delay: timedelta = timedelta(seconds=5),
        max_delay: timedelta = timedelta(hours=1),
        claim_timeout: timedelta = timedelta(seconds=60),
        guard: OutboundGuard | None = None,
    ) -> None:
        # The guard checks webhook URLs when they are saved; the HTTP sender checks
        # them again, with the same policy, when it sends.
        self.guard = guard or OutboundGuard()
        if sender is None:
            from creditbook.adapters.notify.http import HttpWebhookSender

            sender = HttpWebhookSender(guard=self.guard)
        self.uow = uow_factory
        self.clock = clock
        self.sender = sender
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.claim_timeout = claim_timeout

    # ---- writing -------------------------------------------------------------

    def record(self, uow: SqlUnitOfWork, team_id: str, kind: str, payload: dict[str, Any]) -> str:
        """Add an alert inside the caller's transaction; it exists only if that commits."""
        if not _KIND.match(kind):
            raise InvalidInput(
                f"alert kind {kind!r} must be lower_snake_case, 1 to 32 characters",
                field="kind",
            )
        now = self.clock.now()
        notification_id = new_id("ntf")
        # Round-trips through JSON so what is stored is what a receiver will get.
        body = json.loads(json.dumps(payload, default=str))
        uow.conn.execute(
            insert(notifications).values(
                team_id=team_id,
                id=notification_id,
                kind=kind,
                payload=body,
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
        return notification_id

    def notify(self, team_id: str, kind: str, payload: dict[str, Any] | None = None) -> str:
        """Raise an alert for a team now (e.g. ``job_paused``); returns its id."""
        with self.uow() as uow:
            if uow.get_team(team_id) is None:
                raise TeamNotFound(team_id)
            notification_id = self.record(uow, team_id, kind, payload or {})
            uow.commit()
        return notification_id

    # ---- reading --------------------------------------------------------------

    def list(self, team_id: str, *, limit: int = 50, kind: str | None = None) -> list[Notification]:
        """The team's alerts, newest first (the in-app list)."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}", field="limit")
        query = select(notifications).where(notifications.c.team_id == team_id)
        if kind is not None:
            query = query.where(notifications.c.kind == kind)
        with self.uow() as uow:
            if uow.get_team(team_id) is None:
                raise TeamNotFound(team_id)
            rows = uow.conn.execute(query.order_by(notifications.c.id.desc()).limit(limit))
            return [_notification(r) for r in rows]

    def get(self, team_id: str, notification_id: str) -> Notification | None:
        with self.uow() as uow:
            row = uow.conn.execute(
                select(notifications).where(
                    notifications.c.team_id == team_id, notifications.c.id == notification_id
                )
            ).first()
        return _notification(row) if row is not None else None

    # ---- delivering -----------------------------------------------------------

    def backoff(self, attempts: int) -> timedelta:
        """The wait after the ``attempts``-th failed attempt."""
        delay: timedelta = self.base_delay * (2 ** max(attempts - 1, 0))
        return delay if delay < self.max_delay else self.max_delay

    def deliver_due(self, *, limit: int = 100, team_id: str | None = None) -> DeliveryReport:
        """Send every alert whose next attempt is due; returns what happened."""
        report = DeliveryReport()
        now = self.clock.now()
        query = select(notifications.c.team_id, notifications.c.id).where(
            notifications.c.status == "pending", notifications.c.next_attempt_at <= now
        )
        if team_id is not None:
            query = query.where(notifications.c.team_id == team_id)
        with self.uow() as uow:
            due = list(
                uow.conn.execute(query.order_by(notifications.c.next_attempt_at).limit(limit))
            )
        for row in due:
            self._deliver_one(row.team_id, row.id, report)
        return report

    def _deliver_one(self, team_id: str, notification_id: str, report: DeliveryReport) -> None:
        now = self.clock.now()
        key = and_(notifications.c.team_id == team_id, notifications.c.id == notification_id)
        with self.uow() as uow:
            # Claim: push the next attempt past the claim timeout; only one worker wins.
            claimed = uow.conn.execute(
                update(notifications)
                .where(
                    key,
                    notifications.c.status == "pending",
                    or_(
                        notifications.c.next_attempt_at.is_(None),
                        notifications.c.next_attempt_at <= now,
                    ),
                )
                .values(next_attempt_at=now + self.claim_timeout)
            ).rowcount
            if claimed != 1:
                return
            row = uow.conn.execute(select(notifications).where(key)).one()
            conf = settings_row(uow, team_id)
            uow.commit()
        url = conf.webhook_url if conf is not None else None
        secret = conf.webhook_secret if conf is not None else None
        if not url or not secret:
            with self.uow() as uow:
                uow.conn.execute(
                    update(notifications).where(key).values(status="skipped", next_attempt_at=None)
                )
                uow.commit()
            report.skipped += 1
            return
        body = json.dumps(
            {
                "id": row.id,
                "type": row.kind,
                "team_id": row.team_id,
                "created_at": row.created_at.isoformat(),
                "data": row.payload,
            },
            sort_keys=True,
        ).encode("utf-8")
        headers = {
            SIGNATURE_HEADER: sign_body(body, secret, int(self.clock.now().timestamp())),
            EVENT_ID_HEADER: row.id,
        }
        result = self.sender.send(url, body, headers)
        attempts = row.attempts + 1
        done = self.clock.now()
        with self.uow() as uow:
            if result.ok:
                values: dict[str, Any] = {
                    "status": "delivered",
                    "attempts": attempts,
                    "delivered_at": done,
                    "next_attempt_at": None,
                    "last_error": None,
                }
                report.delivered += 1
                report.ids.append(row.id)
            elif result.refused or attempts >= self.max_attempts:
                values = {
                    "status": "failed",
                    "attempts": attempts,
                    "next_attempt_at": None,
                    "last_error": result.error,
                }
                report.failed += 1
            else:
                values = {
                    "attempts": attempts,
                    "next_attempt_at": done + self.backoff(attempts),
                    "last_error": result.error,
                }
                report.retrying += 1
            uow.conn.execute(update(notifications).where(key).values(**values))
            uow.commit()


class NotificationWorker:
    """A background thread that calls ``deliver_due`` every ``interval`` seconds."""

    def __init__(self, service: NotificationService, interval: float = 1.0) -> None:
        self.service = service
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="creditbook-notify", daemon=True)

    def start(self) -> NotificationWorker:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        import logging

        log = logging.getLogger("creditbook.notify")
        while not self._stop.is_set():
            try:
                self.service.deliver_due()
            except DatabaseUnavailable as exc:  # not a bug: no traceback, once per round
                log.warning("notification delivery waits: database unavailable (%s)", exc.cause)
            except Exception:  # a bad row must not kill the worker
                log.exception("notification delivery failed")
            self._stop.wait(self.interval)
