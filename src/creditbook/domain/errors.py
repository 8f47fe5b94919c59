"""The one exception tree of creditbook, with stable codes.

Every error a caller can cause is a ``CreditbookError`` with a ``code`` that
never changes between releases. The HTTP API maps ``status`` to the response
status and renders RFC 9457 problem details; the CLI prints ``message`` and
exits with ``exit_code``. Nothing is written when one of these is raised.

    CreditbookError                      code                  status
    ├── InvalidInput                     validation_error      422
    │   ├── InvalidQuantity              invalid_quantity      422
    │   ├── UnknownFeature               unknown_feature       422
    │   ├── UnknownOutcome               unknown_outcome       422
    │   ├── UnknownPlan                  unknown_plan          422
    │   ├── InvalidCatalog               invalid_catalog       422
    │   ├── InvalidAmount                invalid_amount        422
    │   └── UnsafeUrl                    unsafe_url            422
    ├── NotFound                         not_found             404
    │   ├── TeamNotFound                 not_found             404
    │   ├── MemberNotFound               not_found             404
    │   ├── GrantNotFound                not_found             404
    │   └── HoldNotFound                 not_found             404
    ├── Forbidden                        forbidden             403
    ├── Conflict                         conflict              409
    │   ├── IdempotencyConflict          idempotency_conflict  409
    │   ├── HoldNotActive                hold_not_active       409
    │   ├── CaptureExceedsHold           capture_exceeds_hold  409
    │   └── AlreadyExists                already_exists        409
    ├── InsufficientCredits              insufficient_credits  402
    ├── CapExceeded                      member_cap_exceeded   402
    │   └── KeyCapExceeded               key_cap_exceeded      402
    ├── RateLimited                      rate_limited          429
    ├── AuditFailed                      audit_failed          500
    └── DatabaseUnavailable              database_unavailable  503

Subclasses may narrow ``code`` (``UnknownFeature``) or keep the parent's
(``TeamNotFound`` answers ``not_found`` like every missing resource).

``DatabaseUnavailable`` is the one error no caller causes: the database could
not be reached, dropped the connection, is starting up or in recovery, or
stayed locked past its timeout. The database adapters raise it (the service
and the entry points never look at a driver's exceptions); its ``outcome``
says whether the request surely changed nothing or may have committed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar


class CreditbookError(Exception):
    """Root of every error creditbook raises on purpose."""

    code: ClassVar[str] = "error"
    status: ClassVar[int] = 400
    exit_code: ClassVar[int] = 1
    title: ClassVar[str] = "Request refused"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details

    def to_dict(self) -> dict[str, Any]:
        """The error as plain data: code, message and the details."""
        return {"code": self.code, "message": self.message, **self.details}


class InvalidInput(CreditbookError):
    code = "validation_error"
    status = 422
    exit_code = 2
    title = "Invalid input"


class InvalidQuantity(InvalidInput):
    code = "invalid_quantity"


class InvalidAmount(InvalidInput):
    code = "invalid_amount"


class UnknownFeature(InvalidInput):
    code = "unknown_feature"

    def __init__(self, feature: str, known: Iterable[str]) -> None:
        known_list = sorted(known)
        super().__init__(
            f"unknown feature {feature!r}; valid features: {', '.join(known_list)}",
            feature=feature,
            valid=known_list,
        )


class UnknownOutcome(InvalidInput):
    code = "unknown_outcome"

    def __init__(self, feature: str, outcome: str, known: Iterable[str]) -> None:
        known_list = list(known)
        super().__init__(
            f"unknown outcome {outcome!r} for feature {feature!r}; "
            f"valid outcomes: {', '.join(known_list)}",
            feature=feature,
            outcome=outcome,
            valid=known_list,
        )


class UnknownPlan(InvalidInput):
    code = "unknown_plan"

    def __init__(self, plan: str, known: Iterable[str]) -> None:
        known_list = sorted(known)
        super().__init__(
            f"unknown plan {plan!r}; valid plans: {', '.join(known_list)}",
            plan=plan,
            valid=known_list,
        )


class InvalidCatalog(InvalidInput):
    code = "invalid_catalog"


class UnsafeUrl(InvalidInput):
    """An outbound URL (a team's webhook) that points where the server must not send:
    a loopback, private, link-local, multicast, reserved or unspecified address,
    or plain http where https is required (``adapters/net/guard.py``)."""

    code = "unsafe_url"
    title = "Unsafe URL"


class NotFound(CreditbookError):
    code = "not_found"
    status = 404
    exit_code = 3
    title = "Not found"


class TeamNotFound(NotFound):
    def __init__(self, team_id: str) -> None:
        super().__init__(f"no team {team_id!r}", resource="team", id=team_id)


class MemberNotFound(NotFound):
    def __init__(self, member_id: str) -> None:
        super().__init__(f"no member {member_id!r} in this team", resource="member", id=member_id)


class GrantNotFound(NotFound):
    def __init__(self, grant_id: str) -> None:
        super().__init__(f"no grant {grant_id!r} in this team", resource="grant", id=grant_id)


class HoldNotFound(NotFound):
    def __init__(self, hold_id: str) -> None:
        super().__init__(f"no hold {hold_id!r} in this team", resource="hold", id=hold_id)


class Forbidden(CreditbookError):
    code = "forbidden"
    status = 403
    exit_code = 4
    title = "Forbidden"


class Conflict(CreditbookError):
    code = "conflict"
    status = 409
    exit_code = 5
    title = "Conflict"


class AlreadyExists(Conflict):
    code = "already_exists"


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"
    title = "Idempotency key reused with a different request"

    def __init__(self, key: str) -> None:
        super().__init__(
            f"idempotency key {key!r} was already used with a different request; "
            "send the same request to get its first answer, or use a new key",
            idempotency_key=key,
        )


class HoldNotActive(Conflict):
    code = "hold_not_active"
    title = "Hold is no longer active"

    def __init__(self, hold_id: str, status: str) -> None:
        super().__init__(
            f"hold {hold_id!r} is {status}; only an active hold can be captured or released",
            hold_id=hold_id,
            hold_status=status,
        )


class CaptureExceedsHold(Conflict):
    code = "capture_exceeds_hold"
    title = "Capture above the held amount"

    def __init__(self, hold_id: str, held: int, requested: int) -> None:
        super().__init__(
            f"capture of {requested} credits refused: hold {hold_id!r} holds only {held}; "
            "a capture can never charge more than was held",
            hold_id=hold_id,
            held=held,
            requested=requested,
        )


class InsufficientCredits(CreditbookError):
    code = "insufficient_credits"
    status = 402
    exit_code = 6
    title = "Insufficient credits"

    def __init__(self, needed: int, available: int, feature: str | None = None) -> None:
        what = f" for {feature}" if feature else ""
        super().__init__(
            f"insufficient credits{what}: {needed} needed, {available} available",
            needed=needed,
            available=available,
            **({"feature": feature} if feature else {}),
        )


class CapExceeded(CreditbookError):
    code = "member_cap_exceeded"
    status = 402
    exit_code = 6
    title = "Monthly spending cap reached"

    def __init__(self, who: str, cap: int, spent: int, needed: int) -> None:
        super().__init__(
            f"monthly cap of {who} reached: cap {cap}, spent {spent} this period, "
            f"{needed} more needed; a team admin can raise the cap",
            cap=cap,
            spent=spent,
            needed=needed,
        )


class KeyCapExceeded(CapExceeded):
    """The monthly cap of the API key that spends was reached (its member's may not be)."""

    code = "key_cap_exceeded"
    title = "Monthly spending cap of the API key reached"

    def __init__(self, key: str, cap: int, spent: int, needed: int) -> None:
        super().__init__(f"API key {key}", cap, spent, needed)


class RateLimited(CreditbookError):
    code = "rate_limited"
    status = 429
    exit_code = 7
    title = "Too many requests"


class AuditFailed(CreditbookError):
    code = "audit_failed"
    status = 500
    exit_code = 8
    title = "Ledger audit failed"


class DatabaseUnavailable(CreditbookError):
    """The database cannot serve this request now; retrying later may succeed.

    ``outcome`` is ``not_applied`` when nothing was committed (the connection
    failed before the COMMIT was sent, or the database stayed locked), and
    ``unknown`` when the connection was lost after the COMMIT was sent and
    before its answer came: the request may have taken effect. Retried with
    the same idempotency key, a request that took effect is answered with its
    first answer, and one that did not runs then. ``cause`` (the driver's own
    words, for the log) and ``connection_lost`` (an open connection broke, so
    a new one may work at once) stay out of the answer.
    """

    code = "database_unavailable"
    status = 503
    exit_code = 9
    title = "Database unavailable"

    NOT_APPLIED: ClassVar[str] = "not_applied"
    UNKNOWN: ClassVar[str] = "unknown"

    def __init__(
        self, cause: str, *, outcome: str = NOT_APPLIED, connection_lost: bool = False
    ) -> None:
        if outcome == self.UNKNOWN:
            message = (
                "the connection to the database was lost while this request was being "
                "committed: it may have taken effect. Retry it with the same idempotency "
                "key: if it took effect, its first answer is replayed; if not, it runs then"
            )
        else:
            message = (
                "the database is unavailable right now; nothing was changed. Retry in a moment"
            )
        super().__init__(message, outcome=outcome)
        self.cause = cause
        self.outcome = outcome
        self.connection_lost = connection_lost

    def committing(self) -> DatabaseUnavailable:
        """The same failure, raised while a COMMIT was on its way: its outcome is unknown."""
        if self.outcome == self.UNKNOWN or not self.connection_lost:
            return self
        return DatabaseUnavailable(self.cause, outcome=self.UNKNOWN, connection_lost=True)


def error_classes() -> Mapping[str, type[CreditbookError]]:
    """Every error class by name, for documentation and tests."""
    found: dict[str, type[CreditbookError]] = {}
    pending: list[type[CreditbookError]] = [CreditbookError]
    while pending:
        cls = pending.pop()
        found[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    return found
