"""Run localstripe (a stateful fake Stripe API server) on loopback for a test.

    with run_localstripe() as base_url:      # "http://127.0.0.1:<free port>"
        receiver = WebhookReceiver(); receiver.start()
        register_webhook(base_url, "hook", url=receiver.url, secret="whsec_x")
        StripePaymentProvider("sk_test_x", "whsec_x", api_base=base_url)

localstripe's own ``start()`` binds every interface and persists its store in
``/tmp/localstripe.pickle``, shared by every instance on the machine; so the
server is started here from the interpreter running the tests
(``sys.executable``), bound to 127.0.0.1, with an empty store that is never
written to disk. Any ``sk_...`` key authenticates.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_SERVER = """
import sys
from aiohttp import web
from localstripe import server
from localstripe.resources import store

store.dump_to_disk = lambda: None  # keep each instance's data to itself
web.run_app(server.app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=0.5)
    try:
        connection.request("GET", "/js.stripe.com/v3/")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


@contextlib.contextmanager
def run_localstripe(startup_timeout: float = 15.0) -> Iterator[str]:
    """Start localstripe on 127.0.0.1 and a free port; yield its base URL; stop it."""
    if importlib.util.find_spec("localstripe") is None:
        raise RuntimeError(
            f"localstripe is not installed in {sys.executable}; "
            "install the test extras: pip install -e '.[test]'"
        )
    with tempfile.TemporaryDirectory(prefix="localstripe-") as workdir:
        log_path = Path(workdir) / "localstripe.log"
        for _attempt in range(3):
            port = free_port()
            with log_path.open("wb") as log:
                process = subprocess.Popen(
                    [sys.executable, "-c", _SERVER, str(port)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=workdir,
                )
            try:
                deadline = time.monotonic() + startup_timeout
                while process.poll() is None and time.monotonic() < deadline:
                    if _answers(port):
                        break
                    time.sleep(0.05)
                else:
                    if process.poll() is not None:
                        continue  # the port was taken between probe and bind: try another
                    raise RuntimeError(
                        f"localstripe did not answer within {startup_timeout} s; "
                        f"log:\n{log_path.read_text(errors='replace')[-2000:]}"
                    )
                yield f"http://127.0.0.1:{port}"
                return
            finally:
                if process.poll() is None:
                    process.terminate()
                    try:
                        process.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait()
        raise RuntimeError(
            f"localstripe exited at start three times; log:\n"
            f"{log_path.read_text(errors='replace')[-2000:]}"
        )


def register_webhook(
    base_url: str,
    webhook_id: str,
    *,
    url: str,
    secret: str,
    events: Sequence[str] | None = None,
) -> None:
    """Have localstripe POST signed events to ``url`` (all events, or only ``events``)."""
    body: dict[str, object] = {"url": url, "secret": secret}
    if events is not None:
        body["events"] = list(events)
    host_port = base_url.removeprefix("http://")
    connection = http.client.HTTPConnection(host_port, timeout=5)
    try:
        connection.request(
            "POST",
            f"/_config/webhooks/{webhook_id}",
            body=json.dumps(body),
            headers={"Content-Type": "application/json"},
        )
        response = connection.getresponse()
        if response.status != 200:
            raise RuntimeError(
                f"localstripe refused the webhook config: {response.status} {response.read()!r}"
            )
    finally:
        connection.close()


@dataclass(frozen=True)
class Delivery:
    body: bytes
    signature: str


class WebhookReceiver:
    """A loopback HTTP endpoint that keeps every webhook delivered to it."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._changed:
                    receiver.deliveries.append(
                        Delivery(body, self.headers.get("Stripe-Signature", ""))
                    )
                    receiver._changed.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/webhooks/stripe"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait_for(self, matches: Callable[[Delivery], bool], timeout: float = 5.0) -> Delivery:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for delivery in self.deliveries:
                    if matches(delivery):
                        return delivery
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no matching webhook within {timeout} s")
                self._changed.wait(left)

    def matching(self, matches: Callable[[Delivery], bool]) -> list[Delivery]:
        with self._changed:
            return [delivery for delivery in self.deliveries if matches(delivery)]
