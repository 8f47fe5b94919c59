"""The largest numbers creditbook takes from a caller, declared once for every entry point.

The API's schemas (as ``maximum`` in its OpenAPI document), the dashboard's
forms, the CLI's options and the services all check against these, so a
number out of range is a clear ``InvalidInput`` (422, a form message, exit
code 2), never a database overflow. Amounts of credits are stored in 64-bit
columns (``BIGINT``, at most 2**63 - 1, about 9.2e18); ``MAX_CREDITS`` is far
below that so that sums of many amounts (a balance, a month's spend, a job's
total) still fit.

    name                    maximum          what
    MAX_CREDITS             10**12           one amount of credits: a grant, a purchase, a
                                             cap, a threshold, a job's credit limit
    MAX_QUANTITY            1,000,000        uses in one charge or hold
    MAX_CALL_SECONDS        604,800          one call's duration (7 days)
    MAX_HOLD_TTL_SECONDS    2,592,000        a hold's time to live (30 days)
    MAX_COOLDOWN_SECONDS    100,000,000      the auto-recharge cooldown (about 3 years)
    MAX_SEATS               10,000           seats of a subscription
    MAX_DEDUPE_DAYS         3,650            the enrichment dedupe window (10 years)
    MAX_JOB_LEADS           1,000,000        leads of one enrichment job, and so its sample
                                             size (EnrichmentOptions.max_leads may be lower)
    MAX_PAGE                500              items of one list page
    MAX_SWEEP_MINUTES       525,600          the purchase sweep's waits (one year)
    MAX_RETENTION_DAYS      36,500           how long idempotency keys are kept (100 years)
    MAX_TICK_BATCH          10,000           teams per transaction of ``creditbook tick``
    MAX_TICK_PROCESSES      64               sweeping processes of ``creditbook tick``
"""

from __future__ import annotations

import re

from creditbook.domain.errors import InvalidInput

MAX_CREDITS = 10**12
MAX_QUANTITY = 1_000_000
MAX_CALL_SECONDS = 7 * 86_400
MAX_HOLD_TTL_SECONDS = 30 * 86_400
MAX_COOLDOWN_SECONDS = 10**8
MAX_SEATS = 10_000
MAX_DEDUPE_DAYS = 3650
MAX_JOB_LEADS = 1_000_000
MAX_PAGE = 500
MAX_SWEEP_MINUTES = 365 * 24 * 60
MAX_RETENTION_DAYS = 36_500
MAX_TICK_BATCH = 10_000
MAX_TICK_PROCESSES = 64

_WHOLE = re.compile(r"[+-]?[0-9]+")


def check_whole(
    value: object,
    field: str,
    *,
    minimum: int = 0,
    maximum: int = MAX_CREDITS,
    what: str = "a whole number",
    label: str = "",
) -> int:
    """``value`` if it is an int (not a bool) from ``minimum`` to ``maximum``; else InvalidInput.

    The message names ``label`` (default: the field) and the valid range.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise InvalidInput(
            f"{label or field} is {what} from {minimum:,} to {maximum:,}, got {_shown(value)}",
            field=field,
            minimum=minimum,
            maximum=maximum,
        )
    return value


def _shown(value: object) -> str:
    # A huge int has no repr past 4,300 digits (and a long one helps nobody).
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**30:
        return "a number of more than 30 digits"
    return repr(value)[:60]


def check_credits(
    value: int | None, field: str, *, minimum: int = 0, label: str = ""
) -> int | None:
    """``value`` (None allowed) when it is a number of credits from ``minimum`` to MAX_CREDITS."""
    if value is None:
        return None
    return check_whole(value, field, minimum=minimum, what="a whole number of credits", label=label)


def parse_whole(
    text: str,
    field: str,
    *,
    minimum: int = 0,
    maximum: int = MAX_CREDITS,
    label: str = "",
    what: str = "a whole number",
) -> int | None:
    """A number typed in a form ("1,000", "1_000", " 42 "), None when blank.

    InvalidInput when it is not a whole number, or not from ``minimum`` to
    ``maximum`` (a digit string of any length is refused, never overflowed).
    """
    raw = text.strip().replace(",", "").replace("_", "")
    if not raw:
        return None
    if not _WHOLE.fullmatch(raw):
        shown = text.strip()
        shown = shown if len(shown) <= 40 else shown[:40] + "..."
        raise InvalidInput(f"{label or field} must be a whole number, got {shown!r}", field=field)
    # Past 30 digits it is out of every range: say so without building the int.
    huge = len(raw.lstrip("+-")) > 30
    value = (-(10**31) if raw.startswith("-") else 10**31) if huge else int(raw)
    return check_whole(value, field, minimum=minimum, maximum=maximum, what=what, label=label)
