"""Local stand-ins for the services providers talk to: DNS (UDP), SMTP and HTTP on 127.0.0.1.

Imported by this directory's conftest and tests (pytest puts the directory on sys.path)."""

from __future__ import annotations

import asyncio
import json
import select
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset


class DnsStub:
    """A UDP DNS server answering from a dict; names in ``drop`` never get an answer."""

    def __init__(self, records: dict[tuple[str, str], list[str]], drop: set[str]) -> None:
        self.records = records
        self.drop = drop
        self.queries: list[tuple[str, str]] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._sock], [], [], 0.05)
            if not ready:
                continue
            wire, addr = self._sock.recvfrom(4096)
            query = dns.message.from_wire(wire)
            question = query.question[0]
            name = question.name.to_text().rstrip(".").lower()
            rdtype = dns.rdatatype.to_text(question.rdtype)
            self.queries.append((name, rdtype))
            if name in self.drop:
                continue
            response = dns.message.make_response(query)
            texts = self.records.get((name, rdtype))
            if texts:
                response.answer.append(
                    dns.rrset.from_text_list(question.name, 60, "IN", rdtype, texts)
                )
            elif not any(key[0] == name for key in self.records):
                response.set_rcode(dns.rcode.NXDOMAIN)
            self._sock.sendto(response.to_wire(), addr)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()


@dataclass
class SmtpStub:
    """An SMTP server that accepts RCPT TO for ``mailboxes`` (all when ``catch_all``)."""

    mailboxes: set[str]
    catch_all: bool = False
    rcpt_code: int | None = None  # force one answer to every RCPT, e.g. 451
    commands: list[str] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 stub.example ESMTP ready\r\n")
        while line := await reader.readline():
            text = line.decode().strip()
            self.commands.append(text)
            verb = text.split(":", 1)[0].split(" ", 1)[0].upper()
            if verb == "HELO":
                writer.write(b"250-stub.example greets you\r\n250 OK\r\n")
            elif verb == "MAIL":
                writer.write(b"250 2.1.0 OK\r\n")
            elif verb == "RCPT":
                address = text.split("<", 1)[1].rstrip(">").lower()
                code = self.rcpt_code or (
                    250 if self.catch_all or address in self.mailboxes else 550
                )
                writer.write(f"{code} {address}\r\n".encode())
            elif verb == "QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                break
            else:
                writer.write(b"502 not implemented\r\n")
            await writer.drain()
        writer.close()

    async def __aenter__(self) -> SmtpStub:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


@dataclass
class HttpRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


HttpHandler = Callable[[HttpRequest], tuple[int, Any]]


class HttpStub:
    """A threaded HTTP server answering JSON from ``handler``; records every request."""

    def __init__(self, handler: HttpHandler) -> None:
        self.requests: list[HttpRequest] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                request = HttpRequest(
                    method=self.command,
                    path=url.path,
                    query={k: v[0] for k, v in parse_qs(url.query).items()},
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=json.loads(raw) if raw else None,
                )
                stub.requests.append(request)
                status, payload = handler(request)
                body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = _answer
            do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2)
