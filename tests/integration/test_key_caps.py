"""Per-API-key monthly caps through the library, on both databases, with and without group commit.

A key's cap bounds what is spent through that key in the team's cap month,
beside its member's own cap; threads spending through one key at once stop
exactly at the cap, however their charges are batched.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

import creditbook
from creditbook import Actor, CapExceeded, FrozenClock, KeyCapExceeded
from creditbook.service.access import AccessService

COST = 5  # email_finder, deliverable


def _capped_key(book: creditbook.Creditbook, cap: int) -> tuple[str, AccessService, Actor]:
    access = AccessService(book.kernel)  # for keys and usage: creditbook.open installed the guard
    team = book.create_team("Keys").id
    book.grant(team, 100_000, category="purchased", source="purchase")
    member = book.add_member(team, "robot@acme.example", "member")
    key = access.issue_key(team, member.id, label="crm sync", monthly_cap=cap)
    return team, access, Actor(member_id=member.id, api_key_id=key.key_id)


@pytest.mark.parametrize("grouped", [False, True], ids=["one transaction each", "group commit"])
def test_threads_spending_through_one_key_stop_exactly_at_its_cap(
    book: creditbook.Creditbook, grouped: bool
) -> None:
    team, access, actor = _capped_key(book, cap=23 * COST + 3)
    if grouped:
        book.enable_group_commit()
    ok: list[str] = []
    refused: list[KeyCapExceeded] = []
    lock = threading.Lock()

    def work(worker: int) -> None:
        for i in range(8):
            try:
                receipt = book.charge(
                    team,
                    "email_finder",
                    outcome="deliverable",
                    actor=actor,
                    idempotency_key=f"{worker}-{i}",
                )
            except KeyCapExceeded as exc:
                with lock:
                    refused.append(exc)
            else:
                with lock:
                    ok.append(receipt.charge_id)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(6)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        book.disable_group_commit()
    assert len(ok) == 23 and len(refused) == 6 * 8 - 23
    assert {(e.details["cap"], e.details["needed"]) for e in refused} == {(118, COST)}
    assert access.key_usage_this_month(team, actor.api_key_id or "") == 23 * COST
    assert book.balance(team).available == 100_000 - 23 * COST
    assert book.audit(team).clean


def test_a_keys_holds_count_at_once_and_a_capture_replaces_its_hold(
    book: creditbook.Creditbook,
) -> None:
    team, _, actor = _capped_key(book, cap=40)
    first = book.hold(team, "phone_finder", actor=actor)  # 20
    book.hold(team, "phone_finder", actor=actor)  # 40 of 40
    with pytest.raises(KeyCapExceeded):
        book.hold(team, "linkedin_enrichment", actor=actor)
    book.capture(team, first.hold_id, outcome="found", actor=actor)  # still 40: no double count
    with pytest.raises(KeyCapExceeded):
        book.charge(team, "linkedin_enrichment", outcome="found", actor=actor)
    # A key cap is also a CapExceeded: code that handles a member's cap handles it.
    assert issubclass(KeyCapExceeded, CapExceeded)
    assert book.audit(team).clean


def test_a_keys_cap_month_starts_again_with_the_next_month(
    book: creditbook.Creditbook, clock: FrozenClock
) -> None:
    team, access, actor = _capped_key(book, cap=COST)
    book.charge(team, "email_finder", outcome="deliverable", actor=actor)
    with pytest.raises(KeyCapExceeded):
        book.charge(team, "email_finder", outcome="deliverable", actor=actor)
    clock.advance(timedelta(days=32))
    book.charge(team, "email_finder", outcome="deliverable", actor=actor)
    assert access.key_usage_this_month(team, actor.api_key_id or "") == COST


def test_open_installs_one_cap_guard_and_another_service_replaces_it(
    book: creditbook.Creditbook,
) -> None:
    def cap_guards() -> list[object]:
        return [
            g for g in book.spend_guards if isinstance(getattr(g, "__self__", None), AccessService)
        ]

    assert len(cap_guards()) == 1 and book.guards_read_caps
    mine = AccessService(book.kernel).install()
    assert cap_guards() == [mine.cap_guard]
