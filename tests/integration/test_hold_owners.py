"""Whose a hold is, through the library: ``placed_by`` confines, the owner is booked.

``capture``, ``release`` and ``get_hold`` with ``placed_by=<member>`` reach only
a hold that member placed; any other is ``HoldNotFound``, as one of another
team. Without it (trusted code, admins, service keys) any hold of the team is
settled. Either way the capture or release is booked to the hold's owner and
the settler, when another, is recorded in the entry's meta. On both databases,
with and without group commit.
"""

from __future__ import annotations

import pytest

import creditbook
from creditbook import Actor, HoldNotFound

OWNER = Actor(member_id="mem_owner", api_key_id="key_owner")
ADMIN = Actor(member_id="mem_admin", api_key_id="key_admin")


@pytest.mark.parametrize("grouped", [False, True], ids=["one transaction each", "group commit"])
def test_placed_by_reaches_only_the_members_holds_and_the_owner_is_booked(
    book: creditbook.Creditbook, grouped: bool
) -> None:
    team = book.create_team("Owners").id
    book.grant(team, 1_000, category="purchased", source="purchase")
    if grouped:
        book.enable_group_commit()
    try:
        held = book.hold(team, "phone_finder", actor=OWNER).hold_id
        other = book.hold(team, "phone_finder", actor=OWNER).hold_id
        for settle in (
            lambda: book.capture(team, held, outcome="found", actor=ADMIN, placed_by="mem_admin"),
            lambda: book.release(team, held, actor=ADMIN, placed_by="mem_admin"),
            lambda: book.get_hold(team, held, placed_by="mem_admin"),
        ):
            with pytest.raises(HoldNotFound):
                settle()
        assert book.get_hold(team, held, placed_by="mem_owner").is_active
        receipt = book.capture(team, held, outcome="found", actor=ADMIN, idempotency_key="settle-1")
        again = book.capture(team, held, outcome="found", actor=ADMIN, idempotency_key="settle-1")
        assert again == receipt and receipt.credits == 20
        book.release(team, other, actor=OWNER, placed_by="mem_owner")
    finally:
        book.disable_group_commit()
    entries = {e.kind: e for e in book.ledger(team).entries if e.hold_id in (held, other)}
    capture, release = entries["capture"], entries["release"]
    assert (capture.actor.member_id, capture.actor.api_key_id) == ("mem_owner", "key_owner")
    assert capture.meta == {"settled_by": "member=mem_admin, key=key_admin"}
    assert release.actor.member_id == "mem_owner" and release.meta == {}
    assert book.audit().clean
