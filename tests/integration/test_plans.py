"""Plans, seats and billing periods end to end through the library and the CLI.

Every test runs on SQLite and PostgreSQL (the ``book`` fixture) and moves the
frozen ``clock`` across period boundaries; each ends with a clean audit.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import creditbook
from creditbook.domain.clock import FrozenClock
from creditbook.domain.errors import InvalidInput, UnknownPlan
from creditbook.domain.ledger import Actor
from creditbook.domain.pricing import Call
from creditbook.domain.subscriptions import SubscriptionStatus, TrialAlreadyUsed
from creditbook.entrypoints.cli.app import main
from creditbook.service.plans import SubscriptionNotFound

Book = creditbook.Creditbook


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def team_at(book: Book, clock: FrozenClock, when: datetime, tz: str = "UTC") -> str:
    clock.set(when)
    return book.create_team("Acme", time_zone=tz).id


def buckets(book: Book, team_id: str) -> dict[str, int]:
    return book.balance(team_id).buckets


def period_grant_origins(book: Book, team_id: str) -> Counter[str]:
    return Counter(g.origin or "" for g in book.grants(team_id, include_spent=True) if g.origin)


def assert_clean(book: Book) -> None:
    report = book.audit()
    assert report.clean, report.problems


# ---- the worked examples ---------------------------------------------------------------


def test_a_3_seat_multichannel_expert_team_gets_4500_general_and_1200_calling_each_month(
    book: Book, clock: FrozenClock
) -> None:
    team = team_at(book, clock, utc(2026, 3, 10, 8))
    receipt = book.plans.subscribe(team, "multichannel_expert", seats=3)
    assert receipt.granted == 5700
    assert receipt.next_boundary == utc(2026, 4, 10, 8)
    for month in (3, 4, 5):
        clock.set(utc(2026, month, 10, 8) + timedelta(minutes=1))
        got = buckets(book, team)
        assert (got["subscription"], got["calling"]) == (4500, 1200), month
    calling = [g for g in book.grants(team) if g.scope is not None]
    assert [sorted(g.scope or ()) for g in calling] == [["calling"]]
    assert_clean(book)


def test_calls_spend_the_calling_allowance_before_general_credits(
    book: Book, clock: FrozenClock
) -> None:
    team = team_at(book, clock, utc(2026, 3, 10, 8))
    book.plans.subscribe(team, "multichannel_expert", seats=3)
    receipt = book.charge(team, "calling", call=Call(185, True, "US"))
    assert receipt.credits == 16  # 4 minutes x 4 credits, basic tier
    assert [d.bucket for d in receipt.grants] == ["calling"]
    got = buckets(book, team)
    assert (got["calling"], got["subscription"]) == (1200 - 16, 4500)
    assert_clean(book)


def test_free_credits_are_spent_before_purchased_ones(book: Book, clock: FrozenClock) -> None:
    team = team_at(book, clock, utc(2026, 3, 10, 8))
    book.plans.subscribe(team, "email_pro")
    book.grant(team, 1000, category="purchased", source="purchase")
    receipt = book.charge(team, "email_finder", quantity=10, outcome="deliverable")
    assert {d.category for d in receipt.grants} == {"free"}
    got = buckets(book, team)
    assert (got["subscription"], got["purchased"]) == (950, 1000)
    assert_clean(book)


def test_purchased_credits_survive_cancellation_and_month_boundaries(
    book: Book, clock: FrozenClock
) -> None:
    team = team_at(book, clock, utc(2026, 3, 10, 8))
    book.plans.subscribe(team, "email_pro", seats=2)
    book.grant(team, 700, category="purchased", source="purchase")
    cancelled = book.plans.cancel(team)
    assert cancelled.status == "cancelled"
    assert cancelled.cancel_at == utc(2026, 4, 10, 8)
    assert buckets(book, team)["subscription"] == 2000  # this period is still paid for
    clock.set(utc(2026, 7, 1))
    got = buckets(book, team)
    assert (got["subscription"], got["purchased"]) == (0, 700)
    assert book.charge(team, "phone_finder", outcome="found").grants[0].bucket == "purchased"
    assert sum(1 for o in period_grant_origins(book, team) if o.startswith("period:")) == 1
    assert_clean(book)


def test_free_credits_never_roll_over_and_each_expiry_is_in_the_ledger(
    book: Book, clock: FrozenClock
) -> None:
    team = team_at(book, clock, utc(2026, 3, 10, 8))
    book.plans.subscribe(team, "email_pro")
    book.charge(team, "email_finder", quantity=20, outcome="deliverable")  # 100 spent
    clock.set(utc(2026, 4, 10, 8))
    assert buckets(book, team)["subscription"] == 1000  # not 1900
    expiries = book.ledger(team, kind="expire").entries
    assert [e.credits for e in expiries] == [900]
    assert_clean(book)


def test_the_trial_is_granted_once_per_team_ever(book: Book, clock: FrozenClock) -> None:
    team = team_at(book, clock, utc(2026, 3, 10, 8))
    receipt = book.plans.start_trial(team)
    assert (receipt.plan, receipt.status, receipt.granted) == ("trial", "trialing", 500)
    assert receipt.trial_ends_at == utc(2026, 3, 24, 8)
    assert buckets(book, team)["trial"] == 500
    with pytest.raises(TrialAlreadyUsed):
        book.plans.start_trial(team)
    book.plans.subscribe(team, "email_pro")
    book.plans.cancel(team)
    clock.set(utc(2026, 6, 1))
    book.plans.reactivate(team, plan="email_pro")
    with pytest.raises(TrialAlreadyUsed):
        book.plans.start_trial(team)
    with pytest.raises(InvalidInput, match="trial plan"):
        book.plans.subscribe(team, "trial")
    assert period_grant_origins(book, team)["trial"] == 1
    assert_clean(book)


def test_the_trial_credits_expire_when_the_trial_ends(book: Book, clock: FrozenClock) -> None:
    team = team_at(book, clock, utc(2026, 3, 10, 8))
    book.plans.subscribe(team, "trial")
    clock.set(utc(2026, 3, 24, 8))
    assert buckets(book, team)["trial"] == 0
    assert [e.credits for e in book.ledger(team, kind="expire").entries] == [500]
    assert_clean(book)


def test_a_seat_added_halfway_through_a_30_day_period_adds_half_an_allowance(
    book: Book, clock: FrozenClock
) -> None:
    team = team_at(book, clock, utc(2026, 4, 1))  # April: 30 days
    book.plans.subscribe(team, "email_pro")
    clock.set(utc(2026, 4, 16))
    receipt = book.plans.change_seats(team, 2)
    assert receipt.granted == 500
    assert buckets(book, team)["subscription"] == 1500
    clock.set(utc(2026, 5, 1))
    assert buckets(book, team)["subscription"] == 2000  # both seats in full from May
    assert_clean(book)


def test_removed_seats_take_nothing_back(book: Book, clock: FrozenClock) -> None:
    team = team_at(book, clock, utc(2026, 4, 1))
    book.plans.subscribe(team, "email_pro", seats=3)
    clock.set(utc(2026, 4, 16))
    assert book.plans.change_seats(team, 1).granted == 0
    assert buckets(book, team)["subscription"] == 3000
    clock.set(utc(2026, 5, 1))
    assert buckets(book, team)["subscription"] == 1000
    assert_clean(book)


def test_a_team_anchored_on_the_31st_renews_on_the_last_day_of_shorter_months(
    book: Book, clock: FrozenClock
) -> None:
    team = team_at(book, clock, utc(2028, 1, 31, 12))  # 2028 is a leap year
    book.plans.subscribe(team, "email_pro")
    clock.set(utc(2028, 5, 1))
    starts = sorted(
        g.effective_at
        for g in book.grants(team, include_spent=True)
        if (g.origin or "").startswith("period:")
    )
    assert starts == [
        utc(2028, 1, 31, 12),
        utc(2028, 2, 29, 12),
        utc(2028, 3, 31, 12),
        utc(2028, 4, 30, 12),
    ]
    assert_clean(book)


def test_periods_keep_their_local_time_in_the_teams_time_zone(
    book: Book, clock: FrozenClock
) -> None:
    # 10:00 in Paris is 09:00 UTC in winter and 08:00 UTC in summer.
    team = team_at(book, clock, utc(2026, 3, 1, 9), tz="Europe/Paris")
    receipt = book.plans.subscribe(team, "email_pro")
    assert receipt.time_zone == "Europe/Paris"
    assert receipt.next_boundary == utc(2026, 4, 1, 8)


def test_a_team_untouched_for_three_months_catches_up_once_per_boundary(
    book: Book, clock: FrozenClock
) -> None:
    team = team_at(book, clock, utc(2026, 1, 15, 9, 30))
    book.plans.subscribe(team, "multichannel_expert", seats=2)
    clock.set(utc(2026, 4, 20))
    got = buckets(book, team)
    assert (got["subscription"], got["calling"]) == (3000, 800)
    book.balance(team)  # a second read changes nothing
    origins = period_grant_origins(book, team)
    periods = sorted(o for o in origins if o.startswith("period:"))
    assert len(periods) == 8  # 4 periods x 2 allowances
    assert set(origins.values()) == {1}
    expiries = book.ledger(team, kind="expire", limit=100).entries
    # One entry per boundary: both allowances of the ended period.
    assert [e.credits for e in expiries] == [3800, 3800, 3800]
    assert all(len(e.postings) == 4 for e in expiries)
    sub = book.plans.subscription(team)
    assert sub is not None and sub.issued_through == 3
    assert_clean(book)


def test_tick_brings_due_teams_up_to_date_without_any_read(book: Book, clock: FrozenClock) -> None:
    teams = [team_at(book, clock, utc(2026, 1, 10)) for _ in range(3)]
    for team in teams:
        book.plans.subscribe(team, "email_pro")
    idle = team_at(book, clock, utc(2026, 1, 10))  # no subscription, nothing due
    clock.set(utc(2026, 2, 10, 0, 1))
    # PostgreSQL's database is shared by the session: count only this test's teams.
    seen: list[str] = []
    assert book.tick(on_team=seen.append) == len(seen) >= 3
    assert set(teams) <= set(seen)
    again: list[str] = []
    book.tick(on_team=again.append)
    assert not set(teams) & set(again)
    for team in teams:
        got = book.ledger(team, kind="grant").entries
        assert len(got) == 2
    assert idle not in seen
    assert_clean(book)


def test_tick_in_small_batches_issues_the_same_grants(book: Book, clock: FrozenClock) -> None:
    teams = [team_at(book, clock, utc(2026, 1, 10)) for _ in range(5)]
    for team in teams:
        book.plans.subscribe(team, "multichannel_expert")
    book.hold(teams[0], "phone_finder", ttl_seconds=60)
    clock.set(utc(2026, 3, 10, 0, 1))
    seen: list[str] = []
    book.tick(batch_size=2, on_team=seen.append)
    assert set(teams) <= set(seen)
    for team in teams:
        grants = book.ledger(team, kind="grant").entries
        assert len(grants) == 3  # 3 periods, both allowances in each entry
        assert all(len(e.postings) == 4 for e in grants)
    assert book.get_hold(teams[0], book.ledger(teams[0], kind="hold").entries[0].hold_id or "")
    assert_clean(book)


# ---- plans, cancellation, gifts ---------------------------------------------------------


def test_an_upgrade_grants_the_prorated_difference_at_once(book: Book, clock: FrozenClock) -> None:
    team = team_at(book, clock, utc(2026, 4, 1))
    book.plans.subscribe(team, "email_pro", seats=2)
    clock.set(utc(2026, 4, 16))
    receipt = book.plans.change_plan(team, "multichannel_expert")
    # Half of (1500 - 1000) x 2 general, half of 400 x 2 calling.
    assert receipt.granted == 500 + 400
    assert receipt.plan == "multichannel_expert"
    assert_clean(book)


def test_a_downgrade_takes_effect_at_the_next_period(book: Book, clock: FrozenClock) -> None:
    team = team_at(book, clock, utc(2026, 4, 1))
    book.plans.subscribe(team, "multichannel_expert")
    clock.set(utc(2026, 4, 16))
    receipt = book.plans.change_plan(team, "email_pro")
    assert (receipt.plan, receipt.pending_plan) == ("multichannel_expert", "email_pro")
    clock.set(utc(2026, 5, 1))
    got = buckets(book, team)
    assert (got["subscription"], got["calling"]) == (1000, 0)
    sub = book.plans.subscription(team)
    assert sub is not None and (sub.plan, sub.pending_plan) == ("email_pro", None)
    assert_clean(book)


def test_reactivating_after_the_paid_period_starts_a_new_term_now(
    book: Book, clock: FrozenClock
) -> None:
    team = team_at(book, clock, utc(2026, 4, 1))
    book.plans.subscribe(team, "email_pro")
    book.plans.cancel(team)
    clock.set(utc(2026, 6, 20, 15))
    assert buckets(book, team)["subscription"] == 0
    receipt = book.plans.reactivate(team)
    assert (receipt.status, receipt.anchor, receipt.granted) == (
        "active",
        utc(2026, 6, 20, 15),
        1000,
    )
    assert receipt.next_boundary == utc(2026, 7, 20, 15)
    assert_clean(book)


def test_reactivating_before_the_period_ends_undoes_the_cancellation(
    book: Book, clock: FrozenClock
) -> None:
    team = team_at(book, clock, utc(2026, 4, 1))
    book.plans.subscribe(team, "email_pro")
    book.plans.cancel(team)
    clock.set(utc(2026, 4, 20))
    receipt = book.plans.reactivate(team)
    assert (receipt.status, receipt.cancel_at, receipt.granted) == ("active", None, 0)
    clock.set(utc(2026, 5, 2))
    assert buckets(book, team)["subscription"] == 1000
    assert_clean(book)


def test_a_future_anchor_issues_nothing_until_it_arrives_and_tick_finds_it(
    book: Book, clock: FrozenClock
) -> None:
    team = team_at(book, clock, utc(2026, 4, 1))
    receipt = book.plans.subscribe(team, "email_pro", anchor=utc(2026, 4, 10))
    assert (receipt.granted, receipt.next_boundary) == (0, utc(2026, 4, 10))
    clock.set(utc(2026, 4, 10))
    seen: list[str] = []
    book.tick(on_team=seen.append)
    assert team in seen
    assert len(book.ledger(team, kind="grant").entries) == 1
    assert_clean(book)


def test_a_backdated_anchor_sets_the_billing_day_without_issuing_past_periods(
    book: Book, clock: FrozenClock
) -> None:
    team = team_at(book, clock, utc(2026, 4, 20))
    receipt = book.plans.subscribe(team, "email_pro", anchor=utc(2026, 1, 5))
    assert (receipt.granted, receipt.period_start) == (1000, utc(2026, 4, 5))
    assert book.ledger(team, kind="expire").entries == ()
    assert_clean(book)


def test_a_retried_subscription_with_its_key_has_one_effect(book: Book, clock: FrozenClock) -> None:
    team = team_at(book, clock, utc(2026, 4, 1))
    first = book.plans.subscribe(team, "email_pro", seats=2, idempotency_key="sub-1")
    again = book.plans.subscribe(team, "email_pro", seats=2, idempotency_key="sub-1")
    assert again == first
    assert len(book.ledger(team, kind="grant").entries) == 1
    with pytest.raises(creditbook.IdempotencyConflict):
        book.plans.subscribe(team, "email_pro", seats=3, idempotency_key="sub-1")


def test_commands_refuse_bad_input_and_missing_subscriptions(
    book: Book, clock: FrozenClock
) -> None:
    team = team_at(book, clock, utc(2026, 4, 1))
    with pytest.raises(UnknownPlan, match="valid plans"):
        book.plans.subscribe(team, "platinum")
    with pytest.raises(InvalidInput, match="between 1 and 10000"):
        book.plans.subscribe(team, "email_pro", seats=0)
    with pytest.raises(InvalidInput, match="unknown time zone"):
        book.plans.subscribe(team, "email_pro", time_zone="Mars/Olympus")
    with pytest.raises(SubscriptionNotFound):
        book.plans.change_seats(team, 2)
    with pytest.raises(creditbook.TeamNotFound):
        book.plans.subscribe("team_missing", "email_pro")
    assert book.plans.subscription(team) is None
    assert book.ledger(team).entries == ()


def test_the_actor_of_a_plan_change_is_on_the_grants_it_creates(
    book: Book, clock: FrozenClock
) -> None:
    team = team_at(book, clock, utc(2026, 4, 1))
    book.plans.subscribe(team, "email_pro", actor=Actor(operator="ops@platform"))
    (entry,) = book.ledger(team, kind="grant").entries
    assert entry.actor.operator == "ops@platform"


def test_a_gift_is_recorded_with_who_gave_it_and_why(book: Book, clock: FrozenClock) -> None:
    team = team_at(book, clock, utc(2026, 4, 1))
    receipt = book.plans.gift(
        team,
        250,
        reason="outage on 3 April",
        operator="ada@platform",
        scope=["email_finder"],
        expires_at=utc(2026, 5, 1),
    )
    assert (receipt.bucket, receipt.category, receipt.source) == ("gifted", "free", "gift")
    (entry,) = book.ledger(team, kind="grant").entries
    assert (entry.actor.operator, entry.memo) == ("ada@platform", "outage on 3 April")
    assert book.available(team, "email_finder") == 250
    assert book.available(team, "phone_finder") == 0
    with pytest.raises(InvalidInput, match="reason is required"):
        book.plans.gift(team, 10, reason=" ", operator="ada@platform")
    clock.set(utc(2026, 5, 1))
    assert buckets(book, team)["gifted"] == 0
    assert_clean(book)


def test_a_subscription_persists_its_state(book: Book, clock: FrozenClock) -> None:
    team = team_at(book, clock, utc(2026, 4, 1), tz="America/New_York")
    book.plans.subscribe(team, "multichannel_expert", seats=7)
    book.plans.cancel(team)
    sub = book.plans.subscription(team)
    assert sub is not None
    assert (sub.plan, sub.seats, sub.status, sub.time_zone) == (
        "multichannel_expert",
        7,
        SubscriptionStatus.CANCELLED,
        "America/New_York",
    )
    assert sub.cancel_at == sub.period_at(utc(2026, 4, 1)).end


# ---- CLI ---------------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("CREDITBOOK_DATABASE_URL", url)
    monkeypatch.setenv("COLUMNS", "200")
    return url


def run(args: list[str]) -> int:
    """``creditbook ARGS`` in-process; its exit code (Typer exits through SystemExit)."""
    try:
        return main(args)
    except SystemExit as exc:
        return int(exc.code or 0)


def new_team(capsys: pytest.CaptureFixture[str]) -> str:
    assert run(["team", "create", "Acme"]) == 0
    out = capsys.readouterr().out
    return next(w for w in out.split() if w.startswith("team_"))


def test_cli_team_plan_seats_cancel_and_reactivate(
    cli: str, capsys: pytest.CaptureFixture[str]
) -> None:
    team = new_team(capsys)
    assert run(["team", "plan", team, "multichannel_expert", "--seats", "3"]) == 0
    out = capsys.readouterr().out
    assert "multichannel_expert" in out and "3 seat(s)" in out and "5,700" in out
    assert run(["team", "seats", team, "4"]) == 0
    assert "4 seat(s)" in capsys.readouterr().out
    assert run(["team", "cancel", team]) == 0
    assert "free grants stop at" in capsys.readouterr().out
    assert run(["team", "reactivate", team]) == 0
    assert "active" in capsys.readouterr().out
    assert run(["balance", team]) == 0
    out = capsys.readouterr().out
    assert "expires" in out and "subscription" in out and "calling" in out
    assert run(["audit"]) == 0


def test_cli_refuses_an_unknown_plan_with_a_clear_message(
    cli: str, capsys: pytest.CaptureFixture[str]
) -> None:
    team = new_team(capsys)
    assert run(["team", "plan", team, "platinum"]) == 2
    err = capsys.readouterr().err
    assert "unknown plan 'platinum'" in err and "email_pro" in err
    assert run(["team", "seats", team, "2"]) == 3
    assert "has no subscription" in capsys.readouterr().err


def test_cli_trial_is_refused_the_second_time(cli: str, capsys: pytest.CaptureFixture[str]) -> None:
    team = new_team(capsys)
    assert run(["team", "trial", team]) == 0
    assert "500" in capsys.readouterr().out
    assert run(["team", "trial", team]) == 5
    assert "once per team" in capsys.readouterr().err


def test_cli_gift_records_the_reason(cli: str, capsys: pytest.CaptureFixture[str]) -> None:
    team = new_team(capsys)
    args = ["gift", team, "300", "--reason", "goodwill", "--scope", "calling"]
    assert run([*args, "--expires-at", "2099-01-01", "--operator", "ada"]) == 0
    assert "gave 300 free credits" in capsys.readouterr().out
    book = creditbook.open(cli)
    (entry,) = book.ledger(team).entries
    assert (entry.memo, entry.actor.operator) == ("goodwill", "ada")
    assert book.available(team, "calling") == 300
    assert run(["gift", team, "0", "--reason", "nothing"]) == 2


def test_cli_tick_reports_how_many_teams_it_brought_up_to_date(
    cli: str, capsys: pytest.CaptureFixture[str]
) -> None:
    team = new_team(capsys)
    assert run(["team", "plan", team, "email_pro"]) == 0
    capsys.readouterr()
    assert run(["tick"]) == 0
    assert "0 team(s) brought up to date" in capsys.readouterr().out
    book = creditbook.open(cli)
    with book.uow() as uow:  # make the boundary due now, as if a month had passed
        uow.set_due_at(team, utc(2000, 1, 1))
        uow.commit()
    assert run(["tick"]) == 0
    assert "1 team(s) brought up to date" in capsys.readouterr().out
