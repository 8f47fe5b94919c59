"""One-time sign-in links: sent to members only, good once, for 15 minutes, never enumerating."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI

import creditbook
from creditbook.config import Settings
from creditbook.domain.clock import FrozenClock
from creditbook.entrypoints.web import create_dashboard
from creditbook.entrypoints.web.signin_links import (
    ConsoleMailer,
    InvalidSignInLink,
    RecordingMailer,
    SignInLinks,
)
from creditbook.service.access import AccessService

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


@pytest.fixture
def book(tmp_path: Path, clock: FrozenClock) -> Iterator[creditbook.Creditbook]:
    found = creditbook.open(f"sqlite:///{tmp_path / 'links.db'}", clock=clock)
    yield found
    assert found.engine is not None
    found.engine.dispose()


@pytest.fixture
def access(book: creditbook.Creditbook) -> AccessService:
    return AccessService(book.kernel).install()


def token_of(url: str) -> str:
    return url.split("token=", 1)[1]


def test_a_link_is_sent_per_team_of_the_address_and_works_once(
    book: creditbook.Creditbook, access: AccessService
) -> None:
    one, admin, _ = access.create_team("One", time_zone="UTC", admin_email="sam@x.io")
    two, _, _ = access.create_team("Two", time_zone="UTC", admin_email="other@x.io")
    member, _ = access.add_member(two.id, "Sam@X.io", "member")
    mailer = RecordingMailer()
    links = SignInLinks(book, mailer)
    assert links.send("sam@x.io", "http://h/dashboard/signin/link") == 2
    assert sorted(name for _, name, _ in mailer.sent) == ["One", "Two"]
    by_team = {name: token_of(url) for _, name, url in mailer.sent}
    done = links.redeem(by_team["One"])
    assert (done.team_id, done.member_id) == (one.id, admin.id)
    with pytest.raises(InvalidSignInLink):
        links.redeem(by_team["One"])
    assert links.redeem(by_team["Two"]).member_id == member.id


def test_an_unknown_address_gets_nothing_and_a_forged_or_old_link_is_refused(
    book: creditbook.Creditbook, access: AccessService, clock: FrozenClock
) -> None:
    access.create_team("One", time_zone="UTC", admin_email="sam@x.io")
    mailer = RecordingMailer()
    links = SignInLinks(book, mailer)
    assert links.send("nobody@x.io", "http://h/l") == 0
    assert mailer.sent == []
    links.send("sam@x.io", "http://h/l")
    token = token_of(mailer.sent[0][2])
    team_id, link_id, _secret = token.split(".")
    for forged in (f"{team_id}.{link_id}.wrong", "team_nope.lnk_x.y", "garbage", ""):
        with pytest.raises(InvalidSignInLink):
            links.redeem(forged)
    clock.advance(timedelta(minutes=16))
    with pytest.raises(InvalidSignInLink):
        links.redeem(token)


def test_the_console_mailer_prints_the_link(tmp_path: Path) -> None:
    out = (tmp_path / "console.txt").open("w+")
    ConsoleMailer(out).send_signin_link("a@x.io", "One", "http://h/l?token=t")
    out.seek(0)
    assert "http://h/l?token=t" in out.read()


def test_signing_in_through_the_dashboard_with_a_link(
    book: creditbook.Creditbook, access: AccessService
) -> None:
    team, _, _ = access.create_team("One", time_zone="UTC", admin_email="sam@x.io")
    mailer = RecordingMailer()
    app = FastAPI()
    app.mount(
        "/dashboard",
        create_dashboard(
            book,
            access,
            Settings(env="test", secret_key="k" * 40, public_url="https://credits.example"),
            mailer=mailer,
        ),
    )
    client = TestClient(app, base_url="https://testserver")  # Secure cookies: https only
    page = client.get("/dashboard/signin")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    sent = client.post("/dashboard/signin/link", data={"csrf": csrf, "email": "sam@x.io"})
    assert "a sign-in link is on its way" in sent.text
    url = mailer.sent[0][2]
    assert url.startswith("https://credits.example/dashboard/signin/link?token=")
    confirm = client.get(url.replace("https://credits.example", ""))
    assert confirm.status_code == 200 and "Continue" in confirm.text
    done = client.post("/dashboard/signin/link/redeem", data={"csrf": csrf, "token": token_of(url)})
    assert done.status_code == 200
    assert "sam@x.io" in done.text and team.name in done.text
    fresh = re.search(r'name="csrf" value="([^"]+)"', done.text).group(1)  # type: ignore[union-attr]
    again = client.post(
        "/dashboard/signin/link/redeem", data={"csrf": fresh, "token": token_of(url)}
    )
    assert again.status_code == 422
    assert "already used or expired" in again.text
