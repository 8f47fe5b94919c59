"""Dashboard pages: sign-in, credits, usage and history, buying, members, settings.

Each page reads through the library services and renders a template; each
form posts back here (CSRF-checked by ``checked_form``), calls the service
with the signed-in member as the actor, and redirects (POST/redirect/GET) with
a message. Admin actions are checked here *and* by the services.
"""

from __future__ import annotations

import io
import secrets
from collections.abc import Iterator
from datetime import datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, BackgroundTasks, Depends, Request
from starlette.datastructures import FormData
from starlette.responses import Response, StreamingResponse

from creditbook.domain.errors import Forbidden, InvalidInput
from creditbook.domain.ledger import Entry
from creditbook.domain.limits import parse_whole
from creditbook.entrypoints.web import charts
from creditbook.entrypoints.web.app import (
    LINK_SESSION_PREFIX,
    PREFIX,
    WebUser,
    admin_only,
    checked_form,
    current_user,
    dashboard_of,
    end_session,
    redirect,
    render,
    safe_next,
    session_of,
    signed_in,
    start_session,
)
from creditbook.entrypoints.web.limits import (
    ExportLimit,
    FailingAddressCheck,
    LinkRequestLimit,
    count_failed_signin,
)
from creditbook.entrypoints.web.signin_links import ConsoleMailer, InvalidSignInLink
from creditbook.service.credits import check_email
from creditbook.service.csv_safe import csv_writer
from creditbook.service.usage import UsageReport, usage

router = APIRouter()
UserDep = Annotated[WebUser, Depends(signed_in)]
FormDep = Annotated[FormData, Depends(checked_form)]
PAGE_SIZE = 25
EXPORT_LIMIT = 100_000


# ---- helpers ------------------------------------------------------------------------


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _int_or_none(form: FormData, name: str, label: str) -> int | None:
    """A number of credits typed in a form, within the limits every entry point shares."""
    return parse_whole(_text(form, name), name, label=label, what="a whole number of credits")


def _day(raw: str | None, field: str, zone: ZoneInfo) -> datetime | None:
    if not raw:
        return None
    try:
        day = datetime.strptime(raw, "%Y-%m-%d").date()
    except ValueError:
        raise InvalidInput(
            f"{field} must be a date like 2026-01-31, got {raw!r}", field=field
        ) from None
    return datetime.combine(day, time(0), tzinfo=zone)


def _members_by_id(request: Request, user: WebUser) -> dict[str, Any]:
    return {m.id: m for m in dashboard_of(request).book.members(user.team.id)}


def _who(entry: Entry, members: dict[str, Any]) -> str:
    actor = entry.actor
    if actor.member_id:
        found = members.get(actor.member_id)
        return str(found.email) if found else actor.member_id
    if actor.job_id:
        return f"job {actor.job_id}"
    if actor.operator:
        return f"operator ({actor.operator})"
    return "system"


# ---- sign-in ----------------------------------------------------------------------


@router.get("/signin")
def signin_page(request: Request, next: str | None = None) -> Response:
    if current_user(request) is not None:
        return redirect(safe_next(next))
    return render(request, "signin.html", {"next": safe_next(next), "title": "Sign in"})


@router.post("/signin")
def signin(request: Request, form: FormDep, _: FailingAddressCheck) -> Response:
    dash = dashboard_of(request)
    key = _text(form, "api_key")
    target = safe_next(_text(form, "next") or None)
    principal = dash.access.verify(key) if key else None
    if principal is None:
        count_failed_signin(request)
        return render(
            request,
            "signin.html",
            {
                "next": target,
                "title": "Sign in",
                "error": "That API key is unknown or revoked. Paste the whole key "
                "(it starts with cbk.), or ask your team admin for a new one.",
            },
            status=401,
        )
    if principal.is_service:
        return render(
            request,
            "signin.html",
            {
                "next": target,
                "title": "Sign in",
                "error": "That is a service key, for the platform's own code: it opens no "
                "dashboard session. Sign in with your own API key.",
            },
            status=401,
        )
    if principal.team_status != "active":
        raise Forbidden(f"team {principal.team_id} is suspended; the operator can reactivate it")
    start_session(request, principal.team_id, principal.member_id, principal.key_id)
    return redirect(target)


@router.post("/signin/link")
def send_signin_link(
    request: Request, form: FormDep, background: BackgroundTasks, _: LinkRequestLimit
) -> Response:
    dash = dashboard_of(request)
    links = dash.links
    if links is None:
        raise InvalidInput("sign-in links are not available here; sign in with an API key")
    email = check_email(_text(form, "email"))
    # The link's address comes from the settings, never from the request's Host.
    base = f"{dash.settings.origin}{PREFIX}/signin/link"
    # Looked up and mailed after the answer is sent: a known address and an
    # unknown one get the same answer at the same speed.
    background.add_task(links.deliver, email, base)
    console = isinstance(links.mailer, ConsoleMailer)
    where = " (in development: printed on the server's console)" if console else ""
    # The same answer whether or not the address is known: no member enumeration.
    session_of(request).say(
        f"If {email} belongs to a team member, a sign-in link is on its way{where}. "
        "It works once, for 15 minutes.",
        "success",
    )
    return redirect(f"{PREFIX}/signin")


@router.get("/signin/link")
def signin_link_page(request: Request, token: str = "") -> Response:
    return render(request, "signin_link.html", {"title": "Sign in", "token": token})


@router.post("/signin/link/redeem")
def redeem_signin_link(request: Request, form: FormDep, _: FailingAddressCheck) -> Response:
    links = dashboard_of(request).links
    if links is None:
        raise InvalidInput("sign-in links are not available here; sign in with an API key")
    try:
        done = links.redeem(_text(form, "token"))
    except InvalidSignInLink:
        count_failed_signin(request)
        raise
    assert done.link_id.startswith(LINK_SESSION_PREFIX)
    start_session(request, done.team_id, done.member_id, done.link_id)
    return redirect(f"{PREFIX}/")


@router.post("/signout")
def signout(request: Request, form: FormDep) -> Response:
    end_session(request)
    session_of(request).say("You are signed out.")
    return redirect(f"{PREFIX}/signin")


# ---- credits ------------------------------------------------------------------------


@router.get("/")
def credits_page(request: Request, user: UserDep) -> Response:
    dash = dashboard_of(request)
    team_id = user.team.id
    balance = dash.book.balance(team_id)
    mine = None if user.is_admin else user.member.id
    usage_charts = []
    for days in (30, 90):
        series = charts.daily_usage(dash.book, team_id, days, member_id=mine)
        whose = "Team usage" if mine is None else "Your usage"
        title = f"{whose} by feature, last {days} days (credits per day)"
        usage_charts.append(
            {
                "days": days,
                "title": title,
                "svg": charts.usage_svg(series, title),
                "series": series,
                "totals": {k: sum(v) for k, v in series.values.items()},
            }
        )
    history = charts.balance_history(dash.book, team_id, 90)
    balance_title = "Team balance at the end of each day, last 90 days"
    grants = dash.book.grants(team_id)
    return render(
        request,
        "credits.html",
        {
            "title": "Credits",
            "balance": balance,
            "buckets": ("trial", "subscription", "calling", "gifted", "purchased"),
            "usage_charts": usage_charts,
            "balance_svg": charts.balance_svg(history, balance_title),
            "balance_title": balance_title,
            "history": history,
            "grants": grants,
            "zone": user.team.time_zone,
        },
    )


# ---- usage and history -------------------------------------------------------------------


def _filters(request: Request, user: WebUser) -> dict[str, Any]:
    q = request.query_params
    zone = ZoneInfo(user.team.time_zone)
    feature = q.get("feature") or None
    if feature is not None:
        dashboard_of(request).book.catalog.feature(feature)
    member = q.get("member") or None
    if not user.is_admin:
        if member is not None and member != user.member.id:
            raise Forbidden("a member sees only their own history; an admin sees the whole team")
        member = user.member.id
    since = _day(q.get("from"), "from", zone)
    until_day = _day(q.get("to"), "to", zone)
    until = until_day + timedelta(days=1) if until_day else None
    return {
        "feature": feature,
        "member": member,
        "since": since,
        "until": until,
        "raw": {k: q.get(k, "") for k in ("feature", "member", "from", "to")},
    }


@router.get("/usage")
def usage_page(request: Request, user: UserDep, cursor: str | None = None) -> Response:
    dash = dashboard_of(request)
    f = _filters(request, user)
    page = dash.book.ledger(
        user.team.id,
        limit=PAGE_SIZE,
        cursor=cursor,
        feature=f["feature"],
        member_id=f["member"],
        since=f["since"],
        until=f["until"],
    )
    report_since = f["since"] or (dash.book.clock.now() - timedelta(days=90))

    def report(group_by: str) -> UsageReport:
        """The usage since ``report_since``, under the page's filters."""
        return usage(
            dash.book.kernel,
            user.team.id,
            group_by=group_by,
            since=report_since,
            until=f["until"],
            member_id=f["member"],
        )

    by_member, by_feature = report("member"), report("feature")
    by_key = key_names = None
    if user.is_admin:  # keys name who holds them: admins only, as on Members
        by_key = report("api_key")
        key_names = {k.key_id: k.label or k.key_id for k in dash.access.list_keys(user.team.id)}
    members = _members_by_id(request, user)
    raw = {k: v for k, v in f["raw"].items() if v}
    return render(
        request,
        "usage.html",
        {
            "title": "Usage and history",
            "filters": f["raw"],
            "query": raw,
            "features": sorted(dash.book.catalog.features),
            "members": members,
            "entries": [(e, _who(e, members)) for e in page.entries],
            "next_cursor": page.next_cursor,
            "first_page": cursor is None,
            "by_member": by_member,
            "by_feature": by_feature,
            "by_key": by_key,
            "key_names": key_names,
            "report_since": report_since,
        },
    )


@router.get("/usage.csv")
def usage_csv(request: Request, user: UserDep, _: ExportLimit) -> Response:
    dash = dashboard_of(request)
    f = _filters(request, user)
    members = _members_by_id(request, user)
    team_id = user.team.id

    def rows() -> Iterator[str]:
        out = io.StringIO()
        writer = csv_writer(out, lineterminator="\n")
        writer.writerow(
            ["id", "created_at", "kind", "feature", "outcome", "quantity", "credits", "by", "memo"]
        )
        cursor, sent = None, 0
        while sent < EXPORT_LIMIT:
            page = dash.book.ledger(
                team_id,
                limit=500,
                cursor=cursor,
                feature=f["feature"],
                member_id=f["member"],
                since=f["since"],
                until=f["until"],
            )
            for e in page.entries:
                writer.writerow(
                    [
                        e.id,
                        e.created_at.isoformat(),
                        e.kind.value,
                        e.feature or "",
                        e.outcome or "",
                        e.quantity if e.quantity is not None else "",
                        e.credits,
                        _who(e, members),
                        e.memo or "",
                    ]
                )
            sent += len(page.entries)
            yield out.getvalue()
            out.seek(0)
            out.truncate()
            if page.next_cursor is None:
                break
            cursor = page.next_cursor

    stamp = dash.book.clock.now().strftime("%Y%m%d")
    return StreamingResponse(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="creditbook-ledger-{stamp}.csv"'},
    )


# ---- buying -------------------------------------------------------------------------------


def _admins(request: Request, user: WebUser) -> list[Any]:
    return [m for m in dashboard_of(request).book.members(user.team.id) if m.is_admin]


@router.get("/buy")
def buy_page(request: Request, user: UserDep) -> Response:
    dash = dashboard_of(request)
    pricing = dash.book.catalog.pricing
    service = dash.purchases
    history = service.list(user.team.id, limit=50) if service is not None else []
    packages = [
        {"key": k, "credits": v, "price": dash.book.catalog.price(v)}
        for k, v in pricing.packages.items()
    ]
    return render(
        request,
        "buy.html",
        {
            "title": "Buy credits",
            "pricing": pricing,
            "packages": packages,
            "purchases": history,
            "service": service is not None,
            "admins": _admins(request, user),
            "members": _members_by_id(request, user),
            "balance": dash.book.balance(user.team.id),
            # One token per rendered form: a double submit of it buys once.
            "buy_token": secrets.token_urlsafe(16),
        },
    )


def _purchase_service(request: Request) -> Any:
    service = dashboard_of(request).purchases
    if service is None:
        raise InvalidInput("buying credits is not available: no purchase service is wired")
    return service


@router.post("/buy")
def buy(request: Request, user: UserDep, form: FormDep) -> Response:
    admin_only(user, "buy credits")
    service = _purchase_service(request)
    choice = _text(form, "package")
    package: str | None = None
    credits: int | None = None
    if choice and choice != "custom":
        package = choice
    else:
        credits = _int_or_none(form, "credits", "the number of credits")
        if credits is None:
            raise InvalidInput("choose a package or enter a number of credits", field="credits")
    # The form's one-time token makes a double submit buy once (the service's idempotency).
    token = _text(form, "idempotency_key") or secrets.token_urlsafe(16)
    purchase = service.buy(
        user.team.id,
        credits=credits,
        package=package,
        actor=user.actor,
        idempotency_key=f"web:{user.member.id}:{token}",
    )
    session = session_of(request)
    if purchase.status == "completed":
        session.say(f"Bought {purchase.credits:,} credits for {purchase.amount}.", "success")
    elif purchase.status == "pending":
        session.say(
            f"Purchase of {purchase.credits:,} credits is waiting for the payment provider.",
            "info",
        )
    else:
        session.say(f"The purchase failed: {purchase.failure_message or purchase.status}.", "error")
    return redirect(f"{PREFIX}/buy")


@router.post("/purchases/{purchase_id}/refund")
def refund(request: Request, purchase_id: str, user: UserDep, form: FormDep) -> Response:
    admin_only(user, "refund purchases")
    service = _purchase_service(request)
    done = service.refund(
        user.team.id,
        purchase_id,
        actor=user.actor,
        idempotency_key=f"web-refund:{purchase_id}",
        reason=_text(form, "reason") or None,
    )
    session_of(request).say(
        f"Refunded purchase {done.id}: {done.refunded_credits:,} credits taken back, "
        f"{done.refunded_amount} returned.",
        "success",
    )
    return redirect(f"{PREFIX}/buy")


# ---- members ----------------------------------------------------------------------------


@router.get("/members")
def members_page(request: Request, user: UserDep) -> Response:
    dash = dashboard_of(request)
    rows = []
    emails: dict[str, str] = {}
    for m in dash.book.members(user.team.id):
        if not m.active:
            continue
        visible = user.is_admin or m.id == user.member.id
        spent = dash.access.usage_this_month(user.team.id, m.id) if visible else None
        rows.append({"member": m, "spent": spent})
        emails[m.id] = m.email
    keys = []
    if user.is_admin:  # a key names who holds it: admins only, as in the API
        for k in dash.access.list_keys(user.team.id):
            if k.revoked_at is None and k.member_id in emails:
                spent = dash.access.key_usage_this_month(user.team.id, k.key_id)
                keys.append({"key": k, "email": emails[k.member_id], "spent": spent})
    return render(request, "members.html", {"title": "Members", "rows": rows, "keys": keys})


@router.post("/members/{member_id}")
def update_member(request: Request, member_id: str, user: UserDep, form: FormDep) -> Response:
    admin_only(user, "change members' roles and caps")
    dash = dashboard_of(request)
    role = _text(form, "role") or None
    cap = _int_or_none(form, "monthly_cap", "the monthly cap")
    updated = dash.access.update_member(user.team.id, member_id, role=role, monthly_cap=cap)
    cap_text = _cap_text(updated.monthly_cap)
    session_of(request).say(f"{updated.email} is now {updated.role.value}, {cap_text}.", "success")
    return redirect(f"{PREFIX}/members")


@router.post("/members/keys/{key_id}")
def update_key_cap(request: Request, key_id: str, user: UserDep, form: FormDep) -> Response:
    admin_only(user, "change API keys' caps")
    cap = _int_or_none(form, "monthly_cap", "the monthly cap")
    key = dashboard_of(request).access.set_key_cap(user.team.id, key_id, cap)
    name = key.label or key.key_id
    session_of(request).say(f"API key {name}: {_cap_text(key.monthly_cap)}.", "success")
    return redirect(f"{PREFIX}/members")


def _cap_text(cap: int | None) -> str:
    """A monthly cap in words (0 is a cap: nothing may be spent)."""
    return "no cap" if cap is None else f"{cap:,} credits a month"


# ---- settings ---------------------------------------------------------------------------


@router.get("/settings")
def settings_page(request: Request, user: UserDep) -> Response:
    service = dashboard_of(request).purchases
    current = service.settings(user.team.id) if service is not None else None
    return render(
        request,
        "settings.html",
        {"title": "Settings", "billing": current, "service": service is not None},
    )


@router.post("/settings")
def update_settings(request: Request, user: UserDep, form: FormDep) -> Response:
    admin_only(user, "change billing settings")
    service = _purchase_service(request)
    changes: dict[str, Any] = {
        "low_balance_threshold": _int_or_none(
            form, "low_balance_threshold", "the low-balance threshold"
        ),
        "webhook_url": _text(form, "webhook_url") or None,
        "auto_recharge_enabled": _text(form, "auto_recharge_enabled") == "on",
        "auto_recharge_threshold": _int_or_none(
            form, "auto_recharge_threshold", "the auto-recharge threshold"
        ),
        "auto_recharge_credits": _int_or_none(
            form, "auto_recharge_credits", "the auto-recharge amount"
        ),
    }
    secret = _text(form, "webhook_secret")
    if secret:
        changes["webhook_secret"] = secret
    updated = service.update_settings(user.team.id, actor=user.actor, **changes)
    session_of(request).say("Settings saved.", "success")
    if updated.webhook_secret and not secret:
        # A generated secret is shown once, in this response (never put in the cookie).
        return render(
            request,
            "settings.html",
            {
                "title": "Settings",
                "billing": updated,
                "service": True,
                "new_secret": updated.webhook_secret,
            },
        )
    return redirect(f"{PREFIX}/settings")
