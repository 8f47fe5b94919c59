"""Helpers of the browser tests: the seeded server's facts and a screenshotting page."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-artifacts" / "screenshots"


@dataclass
class Seeded:
    base_url: str
    db_url: str
    team_id: str
    admin_key: str
    member_key: str
    admin_email: str
    member_email: str
    broke_team_id: str
    broke_admin_key: str
    log_path: Path


class Pages:
    """One browser context (its own cookies) and a screenshot of every page visited."""

    def __init__(self, browser: object, server: Seeded, test_name: str, phone: bool) -> None:
        viewport = {"width": 390, "height": 844} if phone else {"width": 1280, "height": 860}
        self.context = browser.new_context(  # type: ignore[attr-defined]
            viewport=viewport, accept_downloads=True, base_url=server.base_url
        )
        self.page = self.context.new_page()
        self.server = server
        self.test_name = re.sub(r"[^a-z0-9_]+", "_", test_name.lower())
        self.count = 0
        SHOTS.mkdir(parents=True, exist_ok=True)

    def shot(self, name: str) -> Path:
        self.count += 1
        path = SHOTS / f"{self.test_name}-{self.count:02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def goto(self, path: str, name: str) -> None:
        self.page.goto(path)
        self.shot(name)

    def sign_in(self, key: str) -> None:
        self.page.goto("/dashboard/")
        self.shot("signin")
        self.page.get_by_label("API key").fill(key)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_url("**/dashboard/")
        self.shot("credits")

    def available(self) -> int:
        return int(self.page.locator("#available").inner_text().replace(",", ""))
