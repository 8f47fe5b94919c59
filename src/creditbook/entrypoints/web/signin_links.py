"""One-time sign-in links for the dashboard, and the mailers that deliver them.

Asking for a link with an email address sends one link per active membership
of that address (the same address may belong to several teams); the answer
never says whether the address is known, and the dashboard looks the address
up and mails after answering (``deliver``), so the answer takes as long for
an unknown address as for a known one. A link is ``{team}.{link id}.{secret}``:
only the secret's SHA-256 is stored, it works once and for ``LINK_TTL``. The
link opens a confirmation page whose button signs in, so a mail scanner that
follows links cannot use it up.

``LinkMailer`` is the interface to email; ``ConsoleMailer`` prints the link
(development), ``RecordingMailer`` keeps it (tests). Production has no mailer
wired yet, so the dashboard offers links only when one is given.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import sys
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol, TextIO

from sqlalchemy import and_, func, insert, select, update

from creditbook.adapters.db.tables import members, teams
from creditbook.adapters.db.tables_web import dashboard_signin_links
from creditbook.domain.errors import InvalidInput, TeamNotFound
from creditbook.domain.ids import new_id
from creditbook.service.credits import Creditbook, check_email

LINK_TTL = timedelta(minutes=15)
MAX_LINKS = 5  # teams an address gets links for at once
log = logging.getLogger("creditbook.web")


class InvalidSignInLink(InvalidInput):
    code = "invalid_signin_link"
    title = "Sign-in link not valid"


class LinkMailer(Protocol):
    def send_signin_link(self, email: str, team_name: str, url: str) -> None: ...


@dataclass
class ConsoleMailer:
    """Development: the 'email' is a block printed on the server's console."""

    stream: TextIO = field(default_factory=lambda: sys.stderr)

    def send_signin_link(self, email: str, team_name: str, url: str) -> None:
        print(
            f"\n[creditbook] sign-in link for {email} ({team_name}), valid "
            f"{int(LINK_TTL.total_seconds() // 60)} minutes, once:\n  {url}\n",
            file=self.stream,
            flush=True,
        )


@dataclass
class RecordingMailer:
    """Tests: keeps (email, team name, url) of every link sent."""

    sent: list[tuple[str, str, str]] = field(default_factory=list)

    def send_signin_link(self, email: str, team_name: str, url: str) -> None:
        self.sent.append((email, team_name, url))


@dataclass(frozen=True, slots=True)
class Redeemed:
    team_id: str
    member_id: str
    link_id: str


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class SignInLinks:
    """Issues and redeems one-time sign-in links over the book's database."""

    def __init__(self, book: Creditbook, mailer: LinkMailer) -> None:
        self.book = book
        self.mailer = mailer

    def send(self, email: str, link_base: str) -> int:
        """Email a link to each active membership of ``email``; returns how many were sent."""
        address = check_email(email)
        now = self.book.clock.now()
        with self.book.uow() as uow:
            found = list(
                uow.conn.execute(
                    select(members.c.team_id, members.c.id, teams.c.name)
                    .select_from(members.join(teams, teams.c.id == members.c.team_id))
                    .where(
                        func.lower(members.c.email) == address.lower(),
                        members.c.active.is_(True),
                    )
                    .limit(MAX_LINKS)
                )
            )
        sent = 0
        for team_id, member_id, team_name in found:
            link_id = new_id("lnk")
            secret = secrets.token_urlsafe(32)
            with self.book.uow() as uow:
                uow.conn.execute(
                    insert(dashboard_signin_links).values(
                        team_id=team_id,
                        id=link_id,
                        member_id=member_id,
                        token_hash=_hash(secret),
                        created_at=now,
                        expires_at=now + LINK_TTL,
                        used_at=None,
                    )
                )
                uow.commit()
            token = f"{team_id}.{link_id}.{secret}"
            self.mailer.send_signin_link(address, team_name, f"{link_base}?token={token}")
            sent += 1
        return sent

    def deliver(self, email: str, link_base: str) -> None:
        """``send``, run after the answer went out: a failure is logged, never raised."""
        try:
            self.send(email, link_base)
        except Exception:
            log.exception("a sign-in link could not be sent")

    def redeem(self, token: str) -> Redeemed:
        """Use a link up; refuses an unknown, used or expired one."""
        refused = InvalidSignInLink(
            "this sign-in link is unknown, already used or expired; ask for a new one"
        )
        parts = token.split(".")
        if len(parts) != 3 or not all(parts) or max(len(p) for p in parts[:2]) > 40:
            raise refused
        team_id, link_id, secret = parts
        now = self.book.clock.now()
        t = dashboard_signin_links
        with self.book.uow() as uow:
            try:
                uow.lock_team(team_id)
            except TeamNotFound:
                raise refused from None
            row = uow.conn.execute(
                select(t).where(t.c.team_id == team_id, t.c.id == link_id)
            ).first()
            if (
                row is None
                or not hmac.compare_digest(row.token_hash, _hash(secret))
                or row.used_at is not None
                or row.expires_at <= now
            ):
                raise refused
            # The used_at guard makes a concurrent second redemption update nothing.
            done = uow.conn.execute(
                update(t)
                .where(and_(t.c.team_id == team_id, t.c.id == link_id, t.c.used_at.is_(None)))
                .values(used_at=now)
            )
            if done.rowcount != 1:
                raise refused
            uow.commit()
        return Redeemed(team_id, row.member_id, link_id)
