"""Server-side dashboard sessions: only a hash is stored, and the server ends them."""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import select

import creditbook
from creditbook.adapters.db.tables_web import dashboard_sessions
from creditbook.config import Settings
from creditbook.domain.clock import FrozenClock
from creditbook.entrypoints.api import create_app
from creditbook.entrypoints.web.session import SALT
from creditbook.service.access import AccessService

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

KEY = "session-tests-secret-key-0123456789abcdef"


@pytest.fixture
def book(tmp_path: Path, clock: FrozenClock) -> Iterator[creditbook.Creditbook]:
    found = creditbook.open(f"sqlite:///{tmp_path / 'sessions.db'}", clock=clock)
    yield found
    assert found.engine is not None
    found.engine.dispose()


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:300]
    return found.group(1)


def _signed_in_client(app: object, api_key: str) -> TestClient:
    client = TestClient(app)  # type: ignore[arg-type]
    page = client.get("/dashboard/signin")
    done = client.post(
        "/dashboard/signin",
        data={"csrf": _csrf(page.text), "api_key": api_key},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    return client


def _signed_in(client: TestClient) -> bool:
    return client.get("/dashboard/", follow_redirects=False).status_code == 200


def _rows(book: creditbook.Creditbook) -> list[object]:
    with book.uow() as uow:
        return list(uow.conn.execute(select(dashboard_sessions)))


def test_the_cookie_names_a_session_whose_secret_is_stored_only_as_a_hash(
    book: creditbook.Creditbook,
) -> None:
    access = AccessService(book.kernel).install()
    team, admin, key = access.create_team("Acme", time_zone="UTC", admin_email="a@x.io")
    client = _signed_in_client(create_app(book, Settings(secret_key=KEY)), key.api_key)
    cookie = URLSafeTimedSerializer(KEY, salt=SALT).loads(client.cookies["cb_session"])
    team_id, session_id, secret = cookie["s"].split(".")
    [row] = _rows(book)
    assert (row.team_id, row.id, row.member_id, row.key_id) == (  # type: ignore[attr-defined]
        team.id,
        session_id,
        admin.id,
        key.key_id,
    )
    assert row.token_hash == hashlib.sha256(secret.encode()).hexdigest()  # type: ignore[attr-defined]
    assert secret not in str(tuple(row))  # type: ignore[arg-type]
    assert team_id == team.id


def test_a_session_ends_after_twelve_hours_on_the_server_clock(
    book: creditbook.Creditbook, clock: FrozenClock
) -> None:
    access = AccessService(book.kernel).install()
    _, _, key = access.create_team("Acme", time_zone="UTC", admin_email="a@x.io")
    client = _signed_in_client(create_app(book, Settings(secret_key=KEY)), key.api_key)
    clock.advance(timedelta(hours=11, minutes=59))
    assert _signed_in(client)
    clock.advance(timedelta(minutes=2))
    assert not _signed_in(client)


def test_a_role_change_in_the_dashboard_ends_only_that_members_sessions(
    book: creditbook.Creditbook,
) -> None:
    access = AccessService(book.kernel).install()
    team, _, key = access.create_team("Acme", time_zone="UTC", admin_email="a@x.io")
    other, other_key = access.add_member(team.id, "b@x.io", "admin")
    app = create_app(book, Settings(secret_key=KEY))
    admin = _signed_in_client(app, key.api_key)
    demoted = _signed_in_client(app, other_key.api_key)
    form = {"csrf": _csrf(admin.get("/dashboard/members").text), "role": "admin"}
    capped = admin.post(f"/dashboard/members/{other.id}", data={**form, "monthly_cap": "10"})
    assert capped.status_code == 200 and _signed_in(demoted)  # same role: the session stays
    changed = admin.post(f"/dashboard/members/{other.id}", data={**form, "role": "member"})
    assert changed.status_code == 200 and "b@x.io is now member" in changed.text
    assert not _signed_in(demoted)
    assert _signed_in(admin)
    assert len(_rows(book)) == 1
