"""The README's run command: `creditbook demo --serve` tours, then serves a demo team."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_tour_prints_keys_that_sign_in_to_the_served_dashboard(tmp_path: Path) -> None:
    port = _free_port()
    log = tmp_path / "demo.log"
    env = {**os.environ, "CREDITBOOK_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}"}
    env["COLUMNS"] = "250"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "creditbook.entrypoints.cli",
                "demo",
                "--serve",
                "--port",
                str(port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        text = log.read_text()
        assert "audit: clean" in text
        assert f"{base}/dashboard/" in text
        admin_key, member_key = re.findall(r"(cbk\.[A-Za-z0-9_.-]+)", text)[:2]
        credits = httpx.get(
            f"{base}/api/team/credits", headers={"Authorization": f"Bearer {admin_key}"}
        )
        assert credits.status_code == 200 and credits.json()["credits"] > 0
        with httpx.Client(base_url=base, follow_redirects=True) as browser:
            page = browser.get("/dashboard/signin")
            token = re.search(r'name="csrf" value="([^"]+)"', page.text)
            assert token, page.text[:500]
            signed_in = browser.post(
                "/dashboard/signin", data={"api_key": member_key, "csrf": token.group(1)}
            )
            assert signed_in.status_code == 200
            assert "Credits" in signed_in.text and "max@acme.example" in signed_in.text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
