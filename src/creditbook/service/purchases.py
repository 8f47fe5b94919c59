"""Buying credits: purchases, payments, webhooks, refunds, auto-recharge and balance alerts.

Buying (``PurchaseService.buy``) takes three steps, so a double submit
buys once and the provider is asked once:

1. one team-locked transaction (``Kernel.transact`` with the caller's
   idempotency key) writes the purchase ``pending``; a retry with the same
   key gets the same purchase back and never reaches step 2;
2. the caller that created the row asks the provider for the money, with the
   purchase id as the provider's idempotency key;
3. a second transaction completes the purchase: a ``purchased`` grant
   (source ``purchase``, no expiry, origin = the purchase id, and the
   ``grants`` table allows one grant per origin) and a ``purchase_completed``
   alert; or marks it failed with a ``purchase_failed`` alert.

With Stripe, step 3 happens when the signed ``payment_intent.succeeded``
webhook arrives (``handle_webhook``); each event id is stored in the
transaction that acted on it, so retries and replays do nothing.

Refunds take back what is left of the purchase's grant (``TeamBook.revoke``:
unspent and unreserved credits, never more) and give back the matching money,
``amount * taken // credits`` minor units, through the provider that was
paid. Credits are taken first, money returned after: a failure in between
leaves ``refund_pending`` set and a new refund call retries the provider
with the same idempotency key.

Alerts and auto-recharge are decided inside the spending transaction (a
spend guard), so they are exact under concurrency: the team lock orders the
transactions and the settings row remembers the state (below threshold,
depleted, recharge armed). A crossing below the auto-recharge threshold
writes a pending ``auto_recharge`` purchase in that same transaction; the
payment runs after the commit (an after-commit hook), once. A refused charge
writes nothing, so the ``depleted`` alert is written by a refusal hook in a
small transaction of its own, deduplicated by the same state row.

A purchase can stay ``pending`` when the service stops between step 1 and
step 2, or after step 2 when the money never comes. ``sweep_pending``
(``creditbook credits sweep``, from cron) settles those once they are old
enough: a stalled manual purchase or auto-recharge asks its provider again
(the purchase id is the provider's idempotency key: it is paid at most
once); one that never reached another provider, or that nobody paid within
a day, is marked failed. A failed purchase that is paid after all is still
granted by its webhook (step 3 accepts it), so failing one loses nothing.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import io
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import insert, select, update

from creditbook.adapters.db.repository import SqlUnitOfWork
from creditbook.adapters.db.tables import members
from creditbook.adapters.db.tables_purchases import payment_events, purchases
from creditbook.adapters.net.guard import OutboundGuard
from creditbook.adapters.payments.base import (
    PaymentEvent,
    PaymentEventType,
    PaymentIntentResult,
    PaymentProvider,
    PaymentProviderError,
    PaymentStatus,
)
from creditbook.adapters.payments.manual import ManualPaymentProvider
from creditbook.domain.book import TeamBook
from creditbook.domain.errors import (
    Conflict,
    CreditbookError,
    Forbidden,
    InsufficientCredits,
    InvalidInput,
    NotFound,
    TeamNotFound,
)
from creditbook.domain.grants import Category, Source
from creditbook.domain.ids import new_id
from creditbook.domain.ledger import SYSTEM, Actor, EntryKind
from creditbook.domain.limits import MAX_COOLDOWN_SECONDS, check_credits, check_whole
from creditbook.domain.money import Money
from creditbook.domain.team import Role
from creditbook.service.csv_safe import csv_writer
from creditbook.service.kernel import Kernel
from creditbook.service.notifications import (
    AlertKind,
    NotificationService,
    ensure_settings_row,
    new_webhook_secret,
    settings_row,
    update_settings_row,
)
from creditbook.service.requests import actor_dict

MAX_PAGE = 500
STALLED_AFTER = timedelta(minutes=15)  # no answer recorded from the provider by then
ABANDONED_AFTER = timedelta(hours=24)  # started with the provider, still not paid
_UNSET: Any = object()


class PurchaseNotFound(NotFound):
    def __init__(self, purchase_id: str) -> None:
        super().__init__(
            f"no purchase {purchase_id!r} in this team", resource="purchase", id=purchase_id
        )


class RefundNotPossible(Conflict):
    code = "refund_not_possible"
    title = "Refund not possible"


@runtime_checkable
class SavesCards(Protocol):
    """A provider that can keep a card for off-session charges (Stripe)."""

    def create_customer(
        self, *, team_id: str, idempotency_key: str, email: str | None = None
    ) -> str: ...

    def attach_payment_method(self, *, customer: str, payment_method: str) -> str: ...


# ---- values --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Purchase:
    """A purchase as stored: credits, price, status, provider reference, refunds."""

    id: str
    team_id: str
    kind: str
    credits: int
    amount: Money
    status: str
    provider: str
    provider_reference: str | None
    package: str | None
    member_id: str | None
    operator: str | None
    grant_id: str | None
    refunded_credits: int
    refunded_amount: Money
    refund_reference: str | None
    refund_pending: bool
    failure_message: str | None
    created_at: datetime
    completed_at: datetime | None
    # Only in the answer to the request that created a pending card payment:
    # lets a browser finish it (Stripe.js). Never stored.
    client_secret: str | None = None

    @property
    def currency(self) -> str:
        return self.amount.currency

    def to_dict(self) -> dict[str, Any]:
        """The API's shape: money as decimal strings with their currency."""
        return {
            "id": self.id,
            "team_id": self.team_id,
            "kind": self.kind,
            "credits": self.credits,
            "amount": str(self.amount.amount),
            "currency": self.amount.currency,
            "status": self.status,
            "provider": self.provider,
            "provider_reference": self.provider_reference,
            "package": self.package,
            "member_id": self.member_id,
            "grant_id": self.grant_id,
            "refunded_credits": self.refunded_credits,
            "refunded_amount": str(self.refunded_amount.amount),
            "refund_reference": self.refund_reference,
            "refund_pending": self.refund_pending,
            "failure_message": self.failure_message,
            "created_at": self.created_at.isoformat(),
            "completed_at": self.completed_at.isoformat() if self.completed_at else None,
            "client_secret": self.client_secret,
        }


@dataclass(frozen=True, slots=True)
class PurchaseRef:
    """The receipt stored with an idempotency key: which purchase a request made."""

    purchase_id: str
    team_id: str
    status: str

    def to_dict(self) -> dict[str, Any]:
        return {"purchase_id": self.purchase_id, "team_id": self.team_id, "status": self.status}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PurchaseRef:
        return cls(data["purchase_id"], data["team_id"], data["status"])


@dataclass(frozen=True, slots=True)
class WebhookOutcome:
    """What a verified payment event did: granted, failed, duplicate, ignored..."""

    event_id: str
    outcome: str
    purchase_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "outcome": self.outcome, "purchase_id": self.purchase_id}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WebhookOutcome:
        return cls(data["event_id"], data["outcome"], data.get("purchase_id"))


@dataclass(frozen=True, slots=True)
class BillingSettings:
    """A team's alert and auto-recharge settings (the webhook secret is not shown)."""

    team_id: str
    low_balance_threshold: int | None
    webhook_url: str | None
    webhook_secret_set: bool
    auto_recharge_enabled: bool
    auto_recharge_threshold: int | None
    auto_recharge_credits: int | None
    auto_recharge_payment_method: str | None
    auto_recharge_cooldown_seconds: int
    auto_recharge_disabled_reason: str | None
    last_recharge_at: datetime | None
    webhook_secret: str | None = None  # only right after it was set or generated

    def to_dict(self) -> dict[str, Any]:
        data = {
            "low_balance_threshold": self.low_balance_threshold,
            "webhook_url": self.webhook_url,
            "webhook_secret_set": self.webhook_secret_set,
            "auto_recharge": {
                "enabled": self.auto_recharge_enabled,
                "threshold": self.auto_recharge_threshold,
                "credits": self.auto_recharge_credits,
                "payment_method": self.auto_recharge_payment_method,
                "cooldown_seconds": self.auto_recharge_cooldown_seconds,
                "disabled_reason": self.auto_recharge_disabled_reason,
                "last_recharge_at": (
                    self.last_recharge_at.isoformat() if self.last_recharge_at else None
                ),
            },
        }
        if self.webhook_secret is not None:
            data["webhook_secret"] = self.webhook_secret
        return data


def _purchase(row: Any) -> Purchase:
    return Purchase(
        id=row.id,
        team_id=row.team_id,
        kind=row.kind,
        credits=row.credits,
        amount=Money.from_minor(row.amount_minor, row.currency),
        status=row.status,
        provider=row.provider,
        provider_reference=row.provider_reference,
        package=row.package,
        member_id=row.member_id,
        operator=row.operator,
        grant_id=row.grant_id,
        refunded_credits=row.refunded_credits,
        refunded_amount=Money.from_minor(row.refunded_minor, row.currency),
        refund_reference=row.refund_reference,
        refund_pending=row.refund_pending,
        failure_message=row.failure_message,
        created_at=row.created_at,
        completed_at=row.completed_at,
    )


def _settings(row: Any, team_id: str) -> BillingSettings:
    if row is None:
        return BillingSettings(
            team_id, None, None, False, False, None, None, None, 3600, None, None
        )
    return BillingSettings(
        team_id=team_id,
        low_balance_threshold=row.low_balance_threshold,
        webhook_url=row.webhook_url,
        webhook_secret_set=bool(row.webhook_secret),
        auto_recharge_enabled=row.auto_recharge_enabled,
        auto_recharge_threshold=row.auto_recharge_threshold,
        auto_recharge_credits=row.auto_recharge_credits,
        auto_recharge_payment_method=row.auto_recharge_payment_method,
        auto_recharge_cooldown_seconds=row.auto_recharge_cooldown_seconds,
        auto_recharge_disabled_reason=row.auto_recharge_disabled_reason,
        last_recharge_at=row.last_recharge_at,
    )


# ---- the service -----------------------------------------------------------------


class PurchaseService:
    """Purchases, refunds, payment webhooks, auto-recharge and balance alerts over a kernel.

    Build it with ``install`` (``creditbook.open`` does): it registers its
    spend guard, refusal hook and after-commit hook on the engine.
    """

    def __init__(
        self,
        kernel: Kernel[SqlUnitOfWork],
        provider: PaymentProvider | None = None,
        notifications: NotificationService | None = None,
        guard: OutboundGuard | None = None,
    ) -> None:
        self.kernel = kernel
        self.provider: PaymentProvider = provider or ManualPaymentProvider()
        self.notifications = notifications or NotificationService(
            kernel.uow, kernel.clock, guard=guard
        )
        self._queued = threading.local()

    def install(self) -> PurchaseService:
        """Register the alert/auto-recharge guard and hooks on the engine (once)."""
        k = self.kernel
        k.spend_guards[:] = [g for g in k.spend_guards if not _bound_to(g, PurchaseService)]
        k.refusal_hooks[:] = [h for h in k.refusal_hooks if not _bound_to(h, PurchaseService)]
        k.after_commit_hooks[:] = [
            h for h in k.after_commit_hooks if not _bound_to(h, PurchaseService)
        ]
        k.spend_guards.append(self._guard)
        k.refusal_hooks.append(self._on_refused)
        k.after_commit_hooks.append(self._after_commit)
        return self

    # ---- pricing -------------------------------------------------------------------

    def quote(self, *, credits: int | None = None, package: str | None = None) -> tuple[int, Money]:
        """The credits and exact price of a package or a custom amount; refuses bad input."""
        pricing = self.kernel.catalog.pricing
        if (credits is None) == (package is None):
            raise InvalidInput(
                "give either a package ("
                + ", ".join(f"{k} = {v} credits" for k, v in pricing.packages.items())
                + f") or a number of credits between {pricing.custom_min} and "
                f"{pricing.custom_max}",
                field="credits",
            )
        if package is not None:
            if package not in pricing.packages:
                raise InvalidInput(
                    f"unknown package {package!r}; valid packages: "
                    + ", ".join(f"{k} ({v} credits)" for k, v in pricing.packages.items()),
                    field="package",
                    valid=sorted(pricing.packages),
                )
            amount = pricing.packages[package]
        else:
            assert credits is not None
            if (
                isinstance(credits, bool)
                or not isinstance(credits, int)
                or not pricing.custom_min <= credits <= pricing.custom_max
            ):
                raise InvalidInput(
                    f"a custom purchase is between {pricing.custom_min} and "
                    f"{pricing.custom_max} credits, got {credits!r}",
                    field="credits",
                    minimum=pricing.custom_min,
                    maximum=pricing.custom_max,
                )
            amount = credits
        return amount, self.kernel.catalog.price(amount)

    # ---- buying --------------------------------------------------------------------

    def buy(
        self,
        team_id: str,
        *,
        credits: int | None = None,
        package: str | None = None,
        actor: Actor,
        idempotency_key: str | None = None,
        payment_method: str | None = None,
    ) -> Purchase:
        """Buy credits for a team (admins only); returns the purchase as it stands.

        ``manual`` completes at once; ``stripe`` answers ``pending`` until its webhook.
        """
        self._require_admin(team_id, actor, "buy credits")
        amount_credits, price = self.quote(credits=credits, package=package)
        request = {
            "credits": credits,
            "package": package,
            "payment_method": payment_method,
            "actor": actor_dict(actor),
        }
        created: list[str] = []

        def apply(book: TeamBook, uow: SqlUnitOfWork) -> PurchaseRef:
            purchase_id = new_id("pur")
            self._insert_purchase(
                uow,
                team_id,
                purchase_id,
                kind="manual",
                credits=amount_credits,
                price=price,
                package=package,
                actor=actor,
                idempotency_key=idempotency_key,
            )
            created.append(purchase_id)
            return PurchaseRef(purchase_id, team_id, "pending")

        ref = self.kernel.transact(
            team_id, "purchase", request, idempotency_key, apply, PurchaseRef
        )
        secret: str | None = None
        if created:
            # Only the request that wrote the row pays: a retry never calls the provider.
            result = self._pay(team_id, ref.purchase_id, price, payment_method=payment_method)
            if result.status is PaymentStatus.PENDING:
                secret = result.client_secret
        return dataclasses.replace(self.get(team_id, ref.purchase_id), client_secret=secret)

    def _insert_purchase(
        self,
        uow: SqlUnitOfWork,
        team_id: str,
        purchase_id: str,
        *,
        kind: str,
        credits: int,
        price: Money,
        package: str | None,
        actor: Actor,
        idempotency_key: str | None,
    ) -> None:
        now = self.kernel.clock.now()
        uow.conn.execute(
            insert(purchases).values(
                team_id=team_id,
                id=purchase_id,
                kind=kind,
                credits=credits,
                amount_minor=price.minor_units,
                currency=price.currency,
                status="pending",
                provider=self.provider.name,
                package=package,
                member_id=actor.member_id,
                api_key_id=actor.api_key_id,
                operator=actor.operator,
                refunded_credits=0,
                refunded_minor=0,
                refund_pending=False,
                idempotency_key=idempotency_key,
                created_at=now,
                updated_at=now,
            )
        )

    def _pay(
        self,
        team_id: str,
        purchase_id: str,
        price: Money,
        *,
        payment_method: str | None = None,
        customer: str | None = None,
        provider: PaymentProvider | None = None,
    ) -> PaymentIntentResult:
        try:
            result = (provider or self.provider).create_payment(
                purchase_id=purchase_id,
                team_id=team_id,
                amount=price,
                idempotency_key=purchase_id,
                customer=customer,
                payment_method=payment_method,
            )
        except PaymentProviderError as exc:
            self._fail(team_id, purchase_id, None, exc.message)
            raise
        self._apply_result(team_id, purchase_id, result)
        return result

    def _apply_result(self, team_id: str, purchase_id: str, result: PaymentIntentResult) -> None:
        if result.status is PaymentStatus.SUCCEEDED:
            self._complete(team_id, purchase_id, result.reference)
        elif result.status is PaymentStatus.FAILED:
            self._fail(
                team_id,
                purchase_id,
                result.reference,
                result.failure_message or result.failure_code or "the payment failed",
            )
        elif result.reference is not None:
            with self.kernel.uow() as uow:
                uow.lock_team(team_id)
                uow.conn.execute(
                    update(purchases)
                    .where(
                        purchases.c.team_id == team_id,
                        purchases.c.id == purchase_id,
                        purchases.c.provider_reference.is_(None),
                    )
                    .values(provider_reference=result.reference, updated_at=self.kernel.clock.now())
                )
                uow.commit()

    def _complete(self, team_id: str, purchase_id: str, reference: str | None) -> str:
        def apply(book: TeamBook, uow: SqlUnitOfWork) -> PurchaseRef:
            row = self._row(uow, team_id, purchase_id)
            return PurchaseRef(
                purchase_id, team_id, self._grant_purchase(book, uow, row, reference)
            )

        return self.kernel.transact(
            team_id, "purchase_complete", {"purchase_id": purchase_id}, None, apply, PurchaseRef
        ).status

    def _grant_purchase(
        self, book: TeamBook, uow: SqlUnitOfWork, row: Any, reference: str | None
    ) -> str:
        """Grant a pending (or failed, then paid) purchase's credits; its new status."""
        if row.status not in ("pending", "failed"):
            return str(row.status)
        grant = book.issue(
            credits=row.credits,
            source=Source.PURCHASE,
            category=Category.PURCHASED,
            bucket="purchased",
            origin=row.id,
            actor=Actor(member_id=row.member_id, api_key_id=row.api_key_id, operator=row.operator),
            memo=f"purchase {row.id}",
        )
        now = self.kernel.clock.now()
        uow.conn.execute(
            update(purchases)
            .where(purchases.c.team_id == row.team_id, purchases.c.id == row.id)
            .values(
                status="completed",
                grant_id=grant.id,
                provider_reference=row.provider_reference or reference,
                failure_message=None,
                completed_at=now,
                updated_at=now,
            )
        )
        self.notifications.record(
            uow,
            row.team_id,
            AlertKind.PURCHASE_COMPLETED,
            {
                "purchase_id": row.id,
                "credits": row.credits,
                "amount": str(Money.from_minor(row.amount_minor, row.currency).amount),
                "currency": row.currency,
                "auto_recharge": row.kind == "auto_recharge",
            },
        )
        return "completed"

    def _fail(self, team_id: str, purchase_id: str, reference: str | None, message: str) -> bool:
        """Mark the purchase failed if it is still pending; whether it was."""
        with self.kernel.uow() as uow:
            uow.lock_team(team_id)
            row = self._row(uow, team_id, purchase_id)
            failed = self._mark_failed(uow, row, reference, message)
            uow.commit()
        return failed

    def _mark_failed(
        self, uow: SqlUnitOfWork, row: Any, reference: str | None, message: str
    ) -> bool:
        if row.status != "pending":
            return False
        now = self.kernel.clock.now()
        uow.conn.execute(
            update(purchases)
            .where(purchases.c.team_id == row.team_id, purchases.c.id == row.id)
            .values(
                status="failed",
                failure_message=message[:2000],
                provider_reference=row.provider_reference or reference,
                updated_at=now,
            )
        )
        payload = {
            "purchase_id": row.id,
            "credits": row.credits,
            "amount": str(Money.from_minor(row.amount_minor, row.currency).amount),
            "currency": row.currency,
            "reason": message,
        }
        if row.kind == "auto_recharge":
            # Not retried in a loop: off until an admin turns it back on.
            uow.forget_settings(row.team_id)
            ensure_settings_row(uow, row.team_id, now)
            update_settings_row(
                uow,
                row.team_id,
                now,
                auto_recharge_enabled=False,
                auto_recharge_disabled_reason=f"payment failed: {message}"[:2000],
            )
            self.notifications.record(uow, row.team_id, AlertKind.AUTO_RECHARGE_FAILED, payload)
        else:
            self.notifications.record(uow, row.team_id, AlertKind.PURCHASE_FAILED, payload)
        return True

    # ---- settling what stayed pending ------------------------------------------------

    def sweep_pending(
        self,
        *,
        stalled_after: timedelta = STALLED_AFTER,
        abandoned_after: timedelta = ABANDONED_AFTER,
        limit: int = MAX_PAGE,
    ) -> SweepReport:
        """Settle purchases left ``pending``, oldest first, at most ``limit`` of them.

        - a manual purchase or an auto-recharge with no answer recorded after
          ``stalled_after``: its provider is asked again, with the purchase id as
          idempotency key (paid at most once, completed or failed as it answers);
        - a purchase through another provider with no answer recorded after
          ``stalled_after``: failed (its payer may have gone; buy again);
        - one that its provider started but nobody paid within ``abandoned_after``:
          failed.

        A failed purchase that is paid after all is granted by its webhook.
        """
        if stalled_after < timedelta(0) or abandoned_after < stalled_after:
            raise InvalidInput(
                "stalled_after is 0 or more and abandoned_after at least stalled_after",
                field="abandoned_after",
            )
        now = self.kernel.clock.now()
        with self.kernel.uow() as uow:
            rows = list(
                uow.conn.execute(
                    select(purchases)
                    .where(
                        purchases.c.status == "pending",
                        purchases.c.updated_at < now - stalled_after,
                    )
                    .order_by(purchases.c.updated_at)
                    .limit(limit)
                )
            )
        retried: list[str] = []
        failed: list[str] = []
        for row in rows:
            age = now - row.updated_at
            # Each step below acts only on a purchase still pending when it runs:
            # a webhook or another sweep may have settled it since it was read.
            if row.kind == "auto_recharge" and row.provider_reference is None:
                if self.run_auto_recharge(row.team_id, row.id) is not None:
                    retried.append(row.id)
            elif row.provider == "manual" and row.provider_reference is None:
                price = Money.from_minor(row.amount_minor, row.currency)
                with contextlib.suppress(CreditbookError):  # a failure is recorded on the row
                    self._pay(row.team_id, row.id, price, provider=ManualPaymentProvider())
                retried.append(row.id)
            elif row.provider_reference is None:
                message = (
                    f"no answer from {row.provider} was recorded within "
                    f"{_duration(stalled_after)}; buy again (if it took the payment after "
                    "all, its notification still grants the credits)"
                )
                if self._fail(row.team_id, row.id, None, message):
                    failed.append(row.id)
            elif age >= abandoned_after:
                message = (
                    f"not paid within {_duration(abandoned_after)}; a later payment still "
                    "grants the credits"
                )
                if self._fail(row.team_id, row.id, None, message):
                    failed.append(row.id)
        return SweepReport(tuple(retried), tuple(failed))

    # ---- reading -------------------------------------------------------------------

    def get(self, team_id: str, purchase_id: str) -> Purchase:
        with self.kernel.uow() as uow:
            return _purchase(self._row(uow, team_id, purchase_id))

    def list(self, team_id: str, *, limit: int = 100, status: str | None = None) -> list[Purchase]:
        """The team's purchases, newest first."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}", field="limit")
        query = select(purchases).where(purchases.c.team_id == team_id)
        if status is not None:
            query = query.where(purchases.c.status == status)
        with self.kernel.uow() as uow:
            if uow.get_team(team_id) is None:
                raise TeamNotFound(team_id)
            rows = uow.conn.execute(query.order_by(purchases.c.id.desc()).limit(limit))
            return [_purchase(r) for r in rows]

    def export_csv(self, team_id: str) -> str:
        """Every purchase of the team as CSV (one header line, oldest first)."""
        columns = [
            "id",
            "created_at",
            "kind",
            "credits",
            "amount",
            "currency",
            "status",
            "provider",
            "provider_reference",
            "refunded_credits",
            "refunded_amount",
            "member_id",
        ]
        out = io.StringIO()
        writer = csv_writer(out, lineterminator="\n")
        writer.writerow(columns)
        for p in reversed(self.list(team_id, limit=MAX_PAGE)):
            data = p.to_dict()
            writer.writerow([data[c] if data[c] is not None else "" for c in columns])
        return out.getvalue()

    # ---- refunds -------------------------------------------------------------------

    def refund(
        self,
        team_id: str,
        purchase_id: str,
        *,
        actor: Actor,
        idempotency_key: str | None = None,
        reason: str | None = None,
    ) -> Purchase:
        """Take back what is left of a purchase's credits and refund that part of its price."""
        self._require_admin(team_id, actor, "refund a purchase")
        request = {"purchase_id": purchase_id, "reason": reason, "actor": actor_dict(actor)}

        def apply(book: TeamBook, uow: SqlUnitOfWork) -> PurchaseRef:
            row = self._row(uow, team_id, purchase_id)
            if row.status == "refunded" and row.refund_pending:
                return PurchaseRef(purchase_id, team_id, "refunded")  # retry the money part
            if row.status == "refunded":
                raise RefundNotPossible(
                    f"purchase {purchase_id!r} was already refunded "
                    f"({row.refunded_credits} credits taken back)",
                    purchase_id=purchase_id,
                )
            if row.status != "completed":
                raise RefundNotPossible(
                    f"purchase {purchase_id!r} is {row.status}; only a completed purchase "
                    "can be refunded",
                    purchase_id=purchase_id,
                )
            if row.grant_id not in book.grants:
                spent = uow.get_grant(team_id, row.grant_id)
                if spent is not None:
                    book.grants[spent.id] = spent
            entry = book.revoke(
                row.grant_id, None, actor=actor, memo=reason or f"refund of purchase {row.id}"
            )
            taken = entry.credits
            if taken == 0:
                raise RefundNotPossible(
                    f"nothing to refund: the {row.credits} credits of purchase {purchase_id!r} "
                    "are all spent or reserved",
                    purchase_id=purchase_id,
                )
            money = row.amount_minor * taken // row.credits
            now = self.kernel.clock.now()
            uow.conn.execute(
                update(purchases)
                .where(purchases.c.team_id == team_id, purchases.c.id == purchase_id)
                .values(
                    status="refunded",
                    refunded_credits=taken,
                    refunded_minor=money,
                    refund_pending=money > 0,
                    updated_at=now,
                )
            )
            self.notifications.record(
                uow,
                team_id,
                AlertKind.PURCHASE_REFUNDED,
                {
                    "purchase_id": purchase_id,
                    "credits": taken,
                    "amount": str(Money.from_minor(money, row.currency).amount),
                    "currency": row.currency,
                },
            )
            return PurchaseRef(purchase_id, team_id, "refunded")

        self.kernel.transact(team_id, "refund", request, idempotency_key, apply, PurchaseRef)
        purchase = self.get(team_id, purchase_id)
        if purchase.refund_pending:
            self._refund_money(purchase)
            purchase = self.get(team_id, purchase_id)
        return purchase

    def _refund_money(self, purchase: Purchase) -> None:
        provider = self._provider_named(purchase.provider)
        reference = purchase.provider_reference or purchase.id
        result = provider.refund(
            reference=reference,
            amount=purchase.refunded_amount,
            idempotency_key=f"refund_{purchase.id}",
        )
        if result.status is PaymentStatus.FAILED:
            raise PaymentProviderError(
                f"{provider.name} refused the refund of {purchase.refunded_amount} for purchase "
                f"{purchase.id!r}; the credits were taken back, retry the refund to return the "
                "money",
                provider=provider.name,
                retryable=True,
            )
        with self.kernel.uow() as uow:
            uow.lock_team(purchase.team_id)
            uow.conn.execute(
                update(purchases)
                .where(purchases.c.team_id == purchase.team_id, purchases.c.id == purchase.id)
                .values(
                    refund_pending=False,
                    refund_reference=result.reference,
                    updated_at=self.kernel.clock.now(),
                )
            )
            uow.commit()

    def _provider_named(self, name: str) -> PaymentProvider:
        if name == self.provider.name:
            return self.provider
        if name == "manual":
            return ManualPaymentProvider()
        raise PaymentProviderError(
            f"this purchase was paid through {name!r} but the configured provider is "
            f"{self.provider.name!r}; configure {name!r} to refund it",
            provider=name,
            retryable=False,
        )

    # ---- webhooks ------------------------------------------------------------------

    def handle_webhook(self, payload: bytes, signature_header: str) -> WebhookOutcome:
        """Verify a provider notification and act on it exactly once.

        A forged or stale signature raises ``WebhookSignatureError`` before
        anything is read or written.
        """
        event = self.provider.verify_webhook(payload, signature_header)
        if event.type is PaymentEventType.OTHER or not event.team_id or not event.purchase_id:
            return WebhookOutcome(event.event_id, "ignored")
        team_id = event.team_id

        def apply(book: TeamBook, uow: SqlUnitOfWork) -> WebhookOutcome:
            seen = uow.conn.execute(
                select(payment_events.c.outcome).where(
                    payment_events.c.team_id == team_id,
                    payment_events.c.provider == event.provider,
                    payment_events.c.event_id == event.event_id,
                )
            ).first()
            if seen is not None:
                return WebhookOutcome(event.event_id, "duplicate", event.purchase_id)
            outcome = self._act_on_event(book, uow, event)
            uow.conn.execute(
                insert(payment_events).values(
                    team_id=team_id,
                    provider=event.provider,
                    event_id=event.event_id,
                    type=event.provider_type,
                    purchase_id=event.purchase_id,
                    outcome=outcome,
                    received_at=self.kernel.clock.now(),
                )
            )
            return WebhookOutcome(event.event_id, outcome, event.purchase_id)

        try:
            return self.kernel.transact(
                team_id, "payment_event", {"event": event.event_id}, None, apply, WebhookOutcome
            )
        except TeamNotFound:
            return WebhookOutcome(event.event_id, "unknown_team", event.purchase_id)

    def _act_on_event(self, book: TeamBook, uow: SqlUnitOfWork, event: PaymentEvent) -> str:
        assert event.team_id is not None and event.purchase_id is not None
        row = uow.conn.execute(
            select(purchases).where(
                purchases.c.team_id == event.team_id, purchases.c.id == event.purchase_id
            )
        ).first()
        if row is None:
            return "unknown_purchase"
        if row.provider != event.provider or (
            row.provider_reference is not None and row.provider_reference != event.reference
        ):
            return "reference_mismatch"
        if event.type is PaymentEventType.SUCCEEDED:
            if event.amount is not None and (
                event.amount.minor_units != row.amount_minor
                or event.amount.currency != row.currency
            ):
                return "amount_mismatch"
            status = self._grant_purchase(book, uow, row, event.reference)
            return "granted" if status == "completed" and row.status != "completed" else "noop"
        if event.type is PaymentEventType.FAILED:
            failed = self._mark_failed(
                uow, row, event.reference, event.failure_message or "the payment failed"
            )
            return "failed" if failed else "noop"
        if event.type is PaymentEventType.REFUNDED:
            return self._refunded_elsewhere(book, uow, row, event)
        return "ignored"

    def _refunded_elsewhere(
        self, book: TeamBook, uow: SqlUnitOfWork, row: Any, event: PaymentEvent
    ) -> str:
        """A refund made at the provider (a Stripe dashboard): take back credits up to it."""
        if event.amount is None or row.grant_id is None:
            return "ignored"
        refunded_minor = min(event.amount.minor_units, row.amount_minor)
        if refunded_minor <= row.refunded_minor:
            return "noop"  # our own refund, announced back
        target = row.credits * refunded_minor // row.amount_minor
        to_take = target - row.refunded_credits
        taken = 0
        if to_take > 0:
            if row.grant_id not in book.grants:
                spent = uow.get_grant(row.team_id, row.grant_id)
                if spent is not None:
                    book.grants[spent.id] = spent
            taken = book.revoke(row.grant_id, to_take, memo=f"refunded at {event.provider}").credits
        uow.conn.execute(
            update(purchases)
            .where(purchases.c.team_id == row.team_id, purchases.c.id == row.id)
            .values(
                status="refunded",
                refunded_credits=row.refunded_credits + taken,
                refunded_minor=refunded_minor,
                updated_at=self.kernel.clock.now(),
            )
        )
        return "refunded"

    # ---- settings ------------------------------------------------------------------

    def settings(self, team_id: str) -> BillingSettings:
        with self.kernel.uow() as uow:
            if uow.get_team(team_id) is None:
                raise TeamNotFound(team_id)
            return _settings(settings_row(uow, team_id), team_id)

    def update_settings(
        self,
        team_id: str,
        *,
        actor: Actor,
        low_balance_threshold: int | None = _UNSET,
        webhook_url: str | None = _UNSET,
        webhook_secret: str | None = _UNSET,
        auto_recharge_enabled: bool = _UNSET,
        auto_recharge_threshold: int | None = _UNSET,
        auto_recharge_credits: int | None = _UNSET,
        auto_recharge_payment_method: str | None = _UNSET,
        auto_recharge_cooldown_seconds: int = _UNSET,
    ) -> BillingSettings:
        """Change what is given (admins or the operator); omitted fields stay as they are.

        Setting a webhook URL without a secret generates one, returned once in
        ``webhook_secret``. Turning auto-recharge on clears a previous failure.
        """
        self._require_admin(team_id, actor, "change billing settings")
        changes: dict[str, Any] = {}
        if low_balance_threshold is not _UNSET:
            changes["low_balance_threshold"] = check_credits(
                low_balance_threshold, "low_balance_threshold"
            )
            changes["below_threshold"] = False
        shown_secret: str | None = None
        if webhook_url is not _UNSET:
            # The outbound-URL guard refuses private, loopback, link-local... destinations
            # now, and the sender checks again when it sends (DNS can change).
            changes["webhook_url"] = (
                self.notifications.guard.check_url(webhook_url) if webhook_url else None
            )
        if webhook_secret is not _UNSET:
            if webhook_secret is not None and not 16 <= len(webhook_secret) <= 200:
                raise InvalidInput(
                    "a webhook secret has 16 to 200 characters", field="webhook_secret"
                )
            changes["webhook_secret"] = webhook_secret
            shown_secret = webhook_secret
        if auto_recharge_threshold is not _UNSET:
            changes["auto_recharge_threshold"] = check_credits(
                auto_recharge_threshold, "auto_recharge_threshold"
            )
        if auto_recharge_credits is not _UNSET:
            if auto_recharge_credits is not None:
                self.quote(credits=auto_recharge_credits)
            changes["auto_recharge_credits"] = auto_recharge_credits
        if auto_recharge_cooldown_seconds is not _UNSET:
            changes["auto_recharge_cooldown_seconds"] = check_whole(
                auto_recharge_cooldown_seconds,
                "auto_recharge_cooldown_seconds",
                maximum=MAX_COOLDOWN_SECONDS,
                what="a whole number of seconds",
            )
        if auto_recharge_payment_method is not _UNSET:
            changes["auto_recharge_payment_method"] = auto_recharge_payment_method
            if auto_recharge_payment_method is not None and isinstance(self.provider, SavesCards):
                customer = self.provider.create_customer(
                    team_id=team_id, idempotency_key=f"customer_{team_id}"
                )
                changes["auto_recharge_customer"] = customer
                changes["auto_recharge_payment_method"] = self.provider.attach_payment_method(
                    customer=customer, payment_method=auto_recharge_payment_method
                )
        if auto_recharge_enabled is not _UNSET:
            changes["auto_recharge_enabled"] = bool(auto_recharge_enabled)
            if auto_recharge_enabled:
                changes["auto_recharge_disabled_reason"] = None
                changes["recharge_armed"] = True
        with self.kernel.uow() as uow:
            uow.lock_team(team_id)
            uow.forget_settings(team_id)
            now = self.kernel.clock.now()
            row = ensure_settings_row(uow, team_id, now)
            if changes.get("webhook_url") and not (
                changes.get("webhook_secret") or row.webhook_secret
            ):
                shown_secret = changes["webhook_secret"] = new_webhook_secret()
            merged = {**row._asdict(), **changes}
            if merged["auto_recharge_enabled"] and (
                merged["auto_recharge_threshold"] is None or merged["auto_recharge_credits"] is None
            ):
                raise InvalidInput(
                    "auto-recharge needs a threshold and a number of credits to buy",
                    field="auto_recharge",
                )
            if changes:
                update_settings_row(uow, team_id, now, **changes)
            uow.commit()
        found = self.settings(team_id)
        if shown_secret is None:
            return found
        return BillingSettings(**{**_fields(found), "webhook_secret": shown_secret})

    # ---- alerts and auto-recharge inside the spending transaction ----------------------

    def _guard(self, uow: SqlUnitOfWork, book: TeamBook) -> None:
        # A group-commit batch read every team's row with the lock (no round trip);
        # a single transaction reads it here.
        prefetched = uow.prefetched_settings
        if book.team_id in prefetched:
            row = prefetched[book.team_id]
        else:
            row = settings_row(uow, book.team_id)
        if row is None:
            return
        available = book.balance().available
        now = self.kernel.clock.now()
        changes: dict[str, Any] = {}
        threshold = row.low_balance_threshold
        if threshold is not None:
            below = available < threshold
            if below and not row.below_threshold:
                changes["below_threshold"] = True
                self.notifications.record(
                    uow,
                    book.team_id,
                    AlertKind.LOW_BALANCE,
                    {"available": available, "threshold": threshold},
                )
            elif not below and row.below_threshold:
                changes["below_threshold"] = False
        if row.depleted and any(e.kind is EntryKind.GRANT for e in book.entries):
            changes["depleted"] = False  # new credits: the next refusal is a new crossing
        recharge_at = row.auto_recharge_threshold
        if row.auto_recharge_enabled and recharge_at is not None:
            if available >= recharge_at:
                if not row.recharge_armed:
                    changes["recharge_armed"] = True
            elif row.recharge_armed and _cooled_down(row, now):
                purchase_id = new_id("pur")
                credits = int(row.auto_recharge_credits)
                self._insert_purchase(
                    uow,
                    book.team_id,
                    purchase_id,
                    kind="auto_recharge",
                    credits=credits,
                    price=self.kernel.catalog.price(credits),
                    package=None,
                    actor=SYSTEM,
                    idempotency_key=None,
                )
                changes["recharge_armed"] = False
                changes["last_recharge_at"] = now
                self._queue().append((book.team_id, purchase_id))
        if changes:
            uow.forget_settings(book.team_id)
            update_settings_row(uow, book.team_id, now, **changes)

    def _queue(self) -> builtins.list[tuple[str, str]]:
        queue: builtins.list[tuple[str, str]] | None = getattr(self._queued, "items", None)
        if queue is None:
            queue = self._queued.items = []
        return queue

    def _after_commit(self, team_id: str) -> None:
        queue = self._queue()
        if not queue:
            return
        mine = [item for item in queue if item[0] == team_id]
        queue[:] = [item for item in queue if item[0] != team_id]
        for _, purchase_id in mine:
            self.run_auto_recharge(team_id, purchase_id)

    def run_auto_recharge(self, team_id: str, purchase_id: str) -> Purchase | None:
        """Pay a pending auto-recharge purchase (called once, after its commit)."""
        with self.kernel.uow() as uow:
            row = uow.conn.execute(
                select(purchases).where(
                    purchases.c.team_id == team_id, purchases.c.id == purchase_id
                )
            ).first()
            conf = settings_row(uow, team_id)
        if row is None or row.status != "pending" or row.kind != "auto_recharge":
            return None  # its transaction rolled back, or it was already handled
        price = Money.from_minor(row.amount_minor, row.currency)
        # A failure is recorded, alerted and disables auto-recharge; nothing to raise.
        with contextlib.suppress(CreditbookError):
            self._pay(
                team_id,
                purchase_id,
                price,
                payment_method=conf.auto_recharge_payment_method if conf else None,
                customer=conf.auto_recharge_customer if conf else None,
            )
        return self.get(team_id, purchase_id)

    def _on_refused(self, team_id: str, operation: str, error: CreditbookError) -> None:
        if not isinstance(error, InsufficientCredits):
            return
        try:
            with self.kernel.uow() as uow:
                uow.lock_team(team_id)
                uow.forget_settings(team_id)
                now = self.kernel.clock.now()
                row = ensure_settings_row(uow, team_id, now)
                if row.depleted:
                    return
                update_settings_row(uow, team_id, now, depleted=True)
                self.notifications.record(
                    uow,
                    team_id,
                    AlertKind.DEPLETED,
                    {"operation": operation, **error.details},
                )
                uow.commit()
        except TeamNotFound:
            return

    # ---- helpers -------------------------------------------------------------------

    def _row(self, uow: SqlUnitOfWork, team_id: str, purchase_id: str) -> Any:
        row = uow.conn.execute(
            select(purchases).where(purchases.c.team_id == team_id, purchases.c.id == purchase_id)
        ).first()
        if row is None:
            if uow.get_team(team_id) is None:
                raise TeamNotFound(team_id)
            raise PurchaseNotFound(purchase_id)
        return row

    def _require_admin(self, team_id: str, actor: Actor, what: str) -> None:
        if actor.operator is not None and actor.member_id is None:
            with self.kernel.uow() as uow:
                if uow.get_team(team_id) is None:
                    raise TeamNotFound(team_id)
            return
        with self.kernel.uow() as uow:
            if uow.get_team(team_id) is None:
                raise TeamNotFound(team_id)
            admins = [
                r.email
                for r in uow.conn.execute(
                    select(members.c.email)
                    .where(
                        members.c.team_id == team_id,
                        members.c.role == Role.ADMIN.value,
                        members.c.active.is_(True),
                    )
                    .order_by(members.c.email)
                )
            ]
            member = uow.get_member(team_id, actor.member_id) if actor.member_id else None
        if member is not None and member.role is Role.ADMIN and member.active:
            return
        who = ", ".join(admins) if admins else "none yet; the operator can add one"
        raise Forbidden(
            f"only a team admin can {what}; ask an admin of this team ({who})",
            admins=admins,
        )


@dataclass(frozen=True, slots=True)
class SweepReport:
    """What ``sweep_pending`` did: purchases asked of their provider again, and failed."""

    retried: tuple[str, ...]
    failed: tuple[str, ...]


def _duration(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    if minutes and minutes % 60 == 0:
        hours = minutes // 60
        return f"{hours} hour{'s' if hours != 1 else ''}"
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def _bound_to(func: Any, cls: type) -> bool:
    return isinstance(getattr(func, "__self__", None), cls)


def _cooled_down(row: Any, now: datetime) -> bool:
    last = row.last_recharge_at
    return last is None or now - last >= timedelta(seconds=row.auto_recharge_cooldown_seconds)


def _fields(settings: BillingSettings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in BillingSettings.__dataclass_fields__}


def install(
    kernel: Kernel[SqlUnitOfWork],
    provider: PaymentProvider | None = None,
    notifications: NotificationService | None = None,
    guard: OutboundGuard | None = None,
) -> PurchaseService:
    """Build the purchase service over ``kernel`` and register its guard and hooks.

    ``guard`` is the outbound-URL policy of the webhooks (when ``notifications``
    is not given; a given notification service brings its own).
    """
    return PurchaseService(kernel, provider, notifications, guard).install()
