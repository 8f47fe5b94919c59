"""A demo team for the newcomer's tour and the browser tests.

``seed_demo(database_url)`` writes, on any database ``creditbook.open``
accepts, a team with an admin and a member (and their API keys), 90 days of
usage by both (entries written at past instants through a frozen clock), a
finished enrichment job and a job paused at its credit limit. The CLI's tour
prints the dashboard URL and the two keys it returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from creditbook.domain.clock import FrozenClock
from creditbook.domain.ledger import Actor
from creditbook.service.access import AccessService

# (feature, outcome) used in turn: billable and not, so hit rates show.
CRM_KEY_LABEL = "CRM sync"
USAGE_PLAN = (
    ("email_finder", "deliverable"),
    ("linkedin_enrichment", "found"),
    ("phone_finder", "found"),
    ("email_finder", "not_found"),
)


@dataclass(frozen=True, slots=True)
class DemoTeam:
    team_id: str
    team_name: str
    admin_email: str
    admin_key: str
    member_email: str
    member_key: str
    finished_job_id: str | None
    paused_job_id: str | None


def seed_demo(
    database_url: str,
    *,
    name: str = "Acme Sales",
    admin_email: str = "ada@acme.example",
    member_email: str = "max@acme.example",
    days: int = 90,
    jobs: bool = True,
) -> DemoTeam:
    """Create the demo team on ``database_url`` and return its keys (shown once)."""
    import creditbook

    now = datetime.now(UTC)
    clock = FrozenClock(now - timedelta(days=days + 5))
    book = creditbook.open(database_url, clock=clock)
    try:
        access = AccessService(book.kernel).install()
        team, admin, admin_key = access.create_team(name, time_zone="UTC", admin_email=admin_email)
        member, member_key = access.add_member(team.id, member_email, "member")
        # The member's integration spends through a key of its own, capped per month.
        crm = access.issue_key(team.id, member.id, label=CRM_KEY_LABEL, monthly_cap=2_000)
        spenders = (
            Actor(member_id=admin.id),
            Actor(member_id=member.id),
            Actor(member_id=member.id, api_key_id=crm.key_id),
        )
        book.grant(team.id, 20_000, category="free", source="gift", reason="welcome gift")
        book.grant(
            team.id,
            3_000,
            category="free",
            source="plan",
            bucket="subscription",
            expires_at=now + timedelta(days=20),
            reason="this month's plan credits",
        )
        for day in range(days, -1, -1):
            clock.set(now - timedelta(days=day, hours=1))
            for n in range(1 + (day * 7) % 5):
                feature, outcome = USAGE_PLAN[(day + n) % len(USAGE_PLAN)]
                who = spenders[(day + n) % 3]
                book.charge(team.id, feature, outcome=outcome, actor=who)
    finally:
        if book.engine is not None:
            book.engine.dispose()
    finished = paused = None
    if jobs:
        finished, paused = _demo_jobs(database_url, team.id, admin.id, member.id)
    return DemoTeam(
        team.id,
        team.name,
        admin_email,
        admin_key.api_key,
        member_email,
        member_key.api_key,
        finished,
        paused,
    )


def _demo_jobs(database_url: str, team_id: str, admin_id: str, member_id: str) -> tuple[str, str]:
    """A finished job and one paused at its credit limit, run now (after the history)."""
    import creditbook
    from creditbook.service.enrichment import EnrichmentService
    from creditbook.service.leads import sample_leads

    book = creditbook.open(database_url)
    service = EnrichmentService(book.kernel)
    done = service.create_job(
        team_id, sample_leads(40), ["email_finder", "linkedin_enrichment"], member_id=member_id
    )
    service.run_sync(team_id, done.id)
    stopped = service.create_job(
        team_id,
        sample_leads(60, start=40),
        ["phone_finder"],
        member_id=admin_id,
        credit_limit=100,
    )
    service.run_sync(team_id, stopped.id)
    if book.engine is not None:
        book.engine.dispose()
    return done.id, stopped.id


def main(argv: list[str] | None = None) -> int:
    """``python -m creditbook.entrypoints.web.demo``: seed a demo database and serve it.

    Prints the dashboard URL and the admin's and the member's keys, then runs
    the API and the dashboard (like ``creditbook serve``) until interrupted.
    """
    import argparse
    import tempfile
    from pathlib import Path

    import uvicorn

    import creditbook
    from creditbook.config import Settings
    from creditbook.entrypoints.api import create_app

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--database", type=Path, help="SQLite file (default: a new temp file)")
    args = parser.parse_args(argv)
    path = args.database or Path(tempfile.mkdtemp(prefix="creditbook-demo-")) / "demo.db"
    url = f"sqlite:///{path}"
    print(f"Seeding a demo team in {path} (90 days of usage, two enrichment jobs)...")
    demo = seed_demo(url)
    base = f"http://{args.host}:{args.port}"
    print(
        f"\nDashboard: {base}/dashboard/   (API docs: {base}/docs)\n"
        f"  admin  {demo.admin_email}: {demo.admin_key}\n"
        f"  member {demo.member_email}: {demo.member_key}\n"
        "Paste a key on the sign-in page. Ctrl-C stops the server.\n",
        flush=True,
    )
    app = create_app(creditbook.open(url), Settings().served_at(args.host, args.port))
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
