"""A loopback TCP proxy in front of PostgreSQL that a test can cut, restore, or make lose
the answer to a COMMIT: a database outage without stopping the shared server.

``cut()`` closes every open connection and answers new ones by closing them
at once (what a client sees of a server that went away or refuses
connections); ``restore()`` forwards again. ``lose_next_commit_answer()``
forwards the next chunk a client sends that holds ``COMMIT``, lets the server
run it, then closes both sides without passing its answer on: the COMMIT
was sent, and no answer came.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from types import TracebackType

from sqlalchemy.engine import make_url

COMMIT = b"COMMIT"
# How long the server gets to run a COMMIT whose answer is lost (it runs in well under).
COMMIT_GRACE_SECONDS = 0.3


class _Pair:
    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client = client
        self.server = server
        self.muted = False  # the server's answers are dropped

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
                if COMMIT in chunk:
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
