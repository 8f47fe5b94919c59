"""Browser tests: the real server (``creditbook serve`` in a subprocess) and Debian's Chromium.

The server runs on a SQLite file seeded here with a team ("Acme": an admin, a
member, 90 days of usage) and a second team with almost no credits (for the
job that pauses). Chromium is ``/usr/bin/chromium`` driven by Playwright for
Python; ``playwright install`` is never used. Every page a test visits is
saved as a PNG in ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from browser_helpers import ROOT, Pages, Seeded

CHROMIUM = Path("/usr/bin/chromium")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seed(db_url: str) -> dict[str, str]:
    """The demo team (Acme: 90 days of usage, two jobs) and a team with 12 credits."""
    import creditbook
    from creditbook.entrypoints.web.demo import seed_demo
    from creditbook.service.access import AccessService

    demo = seed_demo(db_url)
    book = creditbook.open(db_url)
    access = AccessService(book.kernel).install()
    broke, _admin, broke_key = access.create_team(
        "Tiny Startup", time_zone="UTC", admin_email="bo@tiny.example"
    )
    book.grant(broke.id, 12, category="free", source="gift", reason="trial")
    assert book.engine is not None
    book.engine.dispose()
    return {
        "team_id": demo.team_id,
        "admin_key": demo.admin_key,
        "member_key": demo.member_key,
        "broke_team_id": broke.id,
        "broke_admin_key": broke_key.api_key,
    }


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed at /usr/bin/chromium (apt-get install chromium)")
    db = tmp_path_factory.mktemp("dashboard") / "creditbook.db"
    db_url = f"sqlite:///{db}"
    ids = seed(db_url)
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "CREDITBOOK_ENV": "development",
        "CREDITBOOK_SECRET_KEY": "browser-tests-secret-key-0123456789abcdef",
        "CREDITBOOK_PAYMENT_PROVIDER": "manual",
    }
    log_path = tmp_path_factory.getbasetemp() / "server.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "creditbook.entrypoints.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--database-url",
            db_url,
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"creditbook serve did not start; see {log.name}")
        time.sleep(0.1)
    yield Seeded(
        base_url=base,
        db_url=db_url,
        admin_email="ada@acme.example",
        member_email="max@acme.example",
        log_path=log_path,
        **ids,
    )
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="session")
def browser(server: Seeded) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def pages(browser: object, server: Seeded, request: pytest.FixtureRequest) -> Iterator[Pages]:
    """A desktop-sized browser context."""
    found = Pages(browser, server, request.node.name, phone=False)
    yield found
    found.context.close()


@pytest.fixture
def phone_pages(browser: object, server: Seeded, request: pytest.FixtureRequest) -> Iterator[Pages]:
    """A phone-sized browser context (390 x 844)."""
    found = Pages(browser, server, request.node.name, phone=True)
    yield found
    found.context.close()
