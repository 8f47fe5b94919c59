"""creditbook: a credits engine for SaaS products that sell usage through credits.

import creditbook
book = creditbook.open()                      # SQLite in the user data dir
team = book.create_team("Acme")
book.grant(team.id, 1000, category="purchased", source="purchase")
receipt = book.charge(team.id, "email_finder", outcome="deliverable")
book.balance(team.id).available               # 995
"""

from creditbook.adapters.db.audit import AuditReport
from creditbook.bootstrap import open, settle_gc
from creditbook.catalog import load_catalog
from creditbook.domain.book import Balance, Expiring
from creditbook.domain.catalog import Catalog, Feature, Plan
from creditbook.domain.clock import Clock, FrozenClock, SystemClock
from creditbook.domain.errors import (
    AlreadyExists,
    AuditFailed,
    CapExceeded,
    CaptureExceedsHold,
    Conflict,
    CreditbookError,
    Forbidden,
    GrantNotFound,
    HoldNotActive,
    HoldNotFound,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidAmount,
    InvalidCatalog,
    InvalidInput,
    InvalidQuantity,
    KeyCapExceeded,
    MemberNotFound,
    NotFound,
    RateLimited,
    TeamNotFound,
    UnknownFeature,
    UnknownOutcome,
    UnknownPlan,
)
from creditbook.domain.grants import Category, Grant, Source
from creditbook.domain.holds import Hold, HoldStatus
from creditbook.domain.ledger import Account, Actor, Entry, EntryKind, Posting
from creditbook.domain.money import Money
from creditbook.domain.pricing import Call
from creditbook.domain.subscriptions import Subscription, SubscriptionStatus, TrialAlreadyUsed
from creditbook.domain.team import Member, Role, Team
from creditbook.service.credits import Creditbook, LedgerPage
from creditbook.service.enrichment import EnrichmentJob, EnrichmentService, enrichment_for
from creditbook.service.notifications import AlertKind, Notification, NotificationService
from creditbook.service.plans import Plans, SubscriptionNotFound, SubscriptionReceipt
from creditbook.service.purchases import (
    BillingSettings,
    Purchase,
    PurchaseNotFound,
    PurchaseService,
    RefundNotPossible,
)
from creditbook.service.receipts import (
    ChargeReceipt,
    Drawn,
    GrantReceipt,
    HoldReceipt,
    ReleaseReceipt,
    RevokeReceipt,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "Account",
    "Actor",
    "AlertKind",
    "AlreadyExists",
    "AuditFailed",
    "AuditReport",
    "Balance",
    "BillingSettings",
    "Call",
    "CapExceeded",
    "CaptureExceedsHold",
    "Catalog",
    "Category",
    "ChargeReceipt",
    "Clock",
    "Conflict",
    "Creditbook",
    "CreditbookError",
    "Drawn",
    "EnrichmentJob",
    "EnrichmentService",
    "Entry",
    "EntryKind",
    "Expiring",
    "Feature",
    "Forbidden",
    "FrozenClock",
    "Grant",
    "GrantNotFound",
    "GrantReceipt",
    "Hold",
    "HoldNotActive",
    "HoldNotFound",
    "HoldReceipt",
    "HoldStatus",
    "IdempotencyConflict",
    "InsufficientCredits",
    "InvalidAmount",
    "InvalidCatalog",
    "InvalidInput",
    "InvalidQuantity",
    "KeyCapExceeded",
    "LedgerPage",
    "Member",
    "MemberNotFound",
    "Money",
    "NotFound",
    "Notification",
    "NotificationService",
    "Plan",
    "Plans",
    "Posting",
    "Purchase",
    "PurchaseNotFound",
    "PurchaseService",
    "RateLimited",
    "RefundNotPossible",
    "ReleaseReceipt",
    "RevokeReceipt",
    "Role",
    "Source",
    "Subscription",
    "SubscriptionNotFound",
    "SubscriptionReceipt",
    "SubscriptionStatus",
    "SystemClock",
    "Team",
    "TeamNotFound",
    "TrialAlreadyUsed",
    "UnknownFeature",
    "UnknownOutcome",
    "UnknownPlan",
    "__version__",
    "enrichment_for",
    "load_catalog",
    "open",
    "settle_gc",
]
