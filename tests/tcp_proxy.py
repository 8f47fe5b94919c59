"""A loopback TCP proxy in front of PostgreSQL that a test can cut, restore, or make lose
the answer to a COMMIT: a database outage without stopping the shared server.

``cut()`` closes every open connection and answers new ones by closing them
at once (what a client sees of a server that went away or refuses
connections); ``restore()`` forwards again. ``lose_next_commit_answer()``
forwards the next COMMIT a client sends, lets the server run it, then closes
both sides without passing its answer on: the COMMIT was sent, and no
answer came. A COMMIT is found in the client's protocol messages: a simple
query ``COMMIT``, or the Bind of a statement whose Parse was ``COMMIT``
(psycopg prepares a statement it runs often, then sends only its name).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from types import TracebackType

from sqlalchemy.engine import make_url

COMMIT = b"COMMIT"
_NEGOTIATIONS = {80877103, 80877104}  # SSLRequest, GSSENCRequest: the startup goes on
# How long the server gets to run a COMMIT whose answer is lost (it runs in well under).
COMMIT_GRACE_SECONDS = 0.3


class _Commits:
    """Reads a client's PostgreSQL messages as they stream; says when one is a COMMIT."""

    def __init__(self) -> None:
        self._buffer = b""
        self._started = False  # past the startup message: typed messages from here
        self._statements: dict[bytes, bool] = {}  # prepared name -> is a COMMIT

    def feed(self, chunk: bytes) -> bool:
        """True when ``chunk`` completes a COMMIT message."""
        self._buffer += chunk
        found = False
        while True:
            if not self._started:
                if len(self._buffer) < 8:
                    return found
                (size,) = struct.unpack("!I", self._buffer[:4])
                if len(self._buffer) < size:
                    return found
                (code,) = struct.unpack("!I", self._buffer[4:8])
                self._buffer = self._buffer[size:]
                self._started = code not in _NEGOTIATIONS
                continue
            if len(self._buffer) < 5:
                return found
            kind = self._buffer[:1]
            (size,) = struct.unpack("!I", self._buffer[1:5])
            if len(self._buffer) < 1 + size:
                return found
            body = self._buffer[5 : 1 + size]
            self._buffer = self._buffer[1 + size :]
            found = self._is_commit(kind, body) or found

    def _is_commit(self, kind: bytes, body: bytes) -> bool:
        if kind == b"Q":
            return body.rstrip(b"\0").strip().rstrip(b";").upper() == COMMIT
        if kind == b"P":
            name, query = body.split(b"\0")[:2]
            self._statements[name] = query.strip().rstrip(b";").upper() == COMMIT
        elif kind == b"B":
            statement = body.split(b"\0")[1]
            return self._statements.get(statement, False)
        return False


class _Pair:
    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client = client
        self.server = server
        self.muted = False  # the server's answers are dropped
        self.commits = _Commits()

    def close(self) -> None:
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class TcpProxy:
    """Forwards 127.0.0.1:<port> to ``target`` on threads of its own."""

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5432)) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: set[_Pair] = set()
        self._cut = False
        self._lose_commit = False
        self._closed = False
        self.commits_lost = 0
        self._thread = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)
        self._thread.start()

    def url_for(self, database_url: str) -> str:
        """``database_url`` through this proxy."""
        url = make_url(database_url).set(host="127.0.0.1", port=self.port)
        return url.render_as_string(hide_password=False)

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            pairs, self._pairs = self._pairs, set()
        for pair in pairs:
            pair.close()

    def restore(self) -> None:
        with self._lock:
            self._cut = False

    def lose_next_commit_answer(self) -> None:
        with self._lock:
            self._lose_commit = True

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._thread.join(5)
        self._listener.close()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                refused = self._cut
            if refused:
                client.close()
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            for sock in (client, server):  # no Nagle delay on the round trips relayed
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pair = _Pair(client, server)
            with self._lock:
                self._pairs.add(pair)
            threading.Thread(target=self._upstream, args=(pair,), daemon=True).start()
            threading.Thread(target=self._downstream, args=(pair,), daemon=True).start()

    def _upstream(self, pair: _Pair) -> None:
        try:
            while chunk := pair.client.recv(65536):
                lose = False
                if pair.commits.feed(chunk):
                    with self._lock:
                        lose, self._lose_commit = self._lose_commit, False
                if lose:
                    pair.muted = True
                    pair.server.sendall(chunk)
                    time.sleep(COMMIT_GRACE_SECONDS)
                    self.commits_lost += 1
                    break
                pair.server.sendall(chunk)
        except OSError:
            pass
        self._drop(pair)

    def _downstream(self, pair: _Pair) -> None:
        try:
            while chunk := pair.server.recv(65536):
                if not pair.muted:
                    pair.client.sendall(chunk)
        except OSError:
            pass
        self._drop(pair)

    def _drop(self, pair: _Pair) -> None:
        with self._lock:
            self._pairs.discard(pair)
        pair.close()
