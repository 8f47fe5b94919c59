"""The outbound-URL guard: where the server may send a request that a team asked for.

A team admin sets a webhook URL and the server POSTs alerts to it. Without a
guard that is server-side request forgery: ``http://127.0.0.1:5432/``,
``http://169.254.169.254/latest/meta-data/`` or ``http://10.0.0.7/admin`` make
the server reach what only it can reach, and the delivery status tells the
admin whether something answered. Every outbound URL the engine calls for a
team goes through one ``OutboundGuard``, twice:

- **when it is saved** (``check_url``): the URL must be absolute http(s)
  (https unless the guard allows plain http, as in development); an address
  in the host (in any form the C resolver accepts: ``2130706433``, ``0``,
  ``0x7f.1``, ``127.1``, ``[::ffff:127.0.0.1]``) must be public; ``localhost``
  names are refused; a name is resolved (within ``resolve_timeout``) and
  refused when any of its addresses is not public. A name that does not
  resolve yet is accepted: the send-time check decides.
- **when it is used** (``client``): an httpx client whose connections resolve
  the host once, check every address, and connect to a checked address,
  never resolving again, so DNS rebinding between the check and the
  connection cannot switch it. The Host header, TLS SNI and certificate
  verification still use the URL's name. Redirects are not followed and no
  proxy from the environment is used. A refusal raises ``UnsafeUrl``.

An address is refused when it is unspecified, loopback, link-local,
multicast, private, reserved, IPv6 site-local or otherwise not globally
routable (the ``ipaddress`` properties), and an IPv6 address that carries an
IPv4 one (IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible ``::a.b.c.d``,
NAT64 ``64:ff9b::a.b.c.d``, 6to4 ``2002:aabb:ccdd::``) is judged by that
IPv4 address. ``allow_private=True`` (``CREDITBOOK_WEBHOOK_ALLOW_PRIVATE``)
turns the address checks off, for development and tests with a local
receiver; the scheme check stays.
"""

from __future__ import annotations

import ipaddress
import socket
import typing
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, IPv6Network

import httpcore
import httpx

from creditbook.domain.errors import InvalidInput, UnsafeUrl

IPAddress = IPv4Address | IPv6Address
#: (host, port) -> the host's addresses as text; raises OSError when it has none.
Resolver = Callable[[str, int], Sequence[str]]

MAX_URL_LENGTH = 2000
MAX_ADDRESSES_TRIED = 4
_NAT64 = IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = IPv6Network("::/96")
_CHECKS: tuple[tuple[str, str], ...] = (
    ("is_unspecified", "the unspecified address"),
    ("is_loopback", "a loopback address"),
    ("is_link_local", "a link-local address"),
    ("is_multicast", "a multicast address"),
    ("is_private", "a private address"),
    ("is_reserved", "a reserved address"),
    ("is_site_local", "a site-local address"),
)
# Save-time lookups run here so a slow resolver cannot hold a request for long.
_LOOKUPS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="creditbook-dns")


def system_resolve(host: str, port: int) -> list[str]:
    """The host's IPv4 and IPv6 addresses from the system resolver, in its order."""
    found: list[str] = []
    for family, _, _, _, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        if family in (socket.AF_INET, socket.AF_INET6):
            address = str(sockaddr[0])
            if address not in found:
                found.append(address)
    return found


def unsafe_reason(address: IPAddress) -> str | None:
    """Why the server must not connect to ``address`` ("a loopback address"), or None."""
    if isinstance(address, IPv6Address):
        embedded: IPv4Address | None = None
        form = ""
        if address.ipv4_mapped is not None:
            embedded, form = address.ipv4_mapped, "IPv4-mapped"
        elif address in _NAT64:
            embedded, form = IPv4Address(int(address) & 0xFFFFFFFF), "NAT64"
        elif address in _IPV4_COMPATIBLE and int(address) > 1:  # not :: nor ::1
            embedded, form = IPv4Address(int(address) & 0xFFFFFFFF), "IPv4-compatible"
        elif address.sixtofour is not None:
            embedded, form = address.sixtofour, "6to4"
        if embedded is not None:
            inner = unsafe_reason(embedded)
            if inner is not None:
                article = "an" if form.startswith("IPv4") else "a"
                return f"{article} {form} form of {embedded}, {inner}"
            if form != "6to4":  # the destination is the public IPv4 address itself
                return None
    for prop, what in _CHECKS:
        if getattr(address, prop, False):
            return what
    if not address.is_global:
        return "an address that is not publicly routable"
    return None


def literal_address(host: str) -> IPAddress | None:
    """The address ``host`` spells (dotted, bracketed IPv6, or any inet_aton form), or None."""
    text = host.strip("[]").rstrip(".")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if ":" in text or not text:
        return None
    try:
        # What getaddrinfo would read as an address: 2130706433, 0, 0x7f.1, 127.1, 0177.0.0.1.
        return IPv4Address(socket.inet_aton(text))
    except OSError:
        return None


def _is_standard_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _is_localhost(host: str) -> bool:
    name = host.rstrip(".").lower()
    return name == "localhost" or name.endswith(".localhost")


@dataclass(frozen=True, slots=True)
class OutboundGuard:
    """The policy for outbound URLs; see the module docstring."""

    allow_private: bool = False
    require_https: bool = True
    resolve: Resolver = system_resolve
    resolve_timeout: float = 2.0

    # ---- save time ------------------------------------------------------------------

    def check_url(self, url: str, field: str = "webhook_url") -> str:
        """``url`` when the server may send to it; ``UnsafeUrl`` (or ``InvalidInput``) if not."""
        parsed = self._parse(url, field)
        if self.allow_private:
            return url
        host = parsed.raw_host.decode("ascii")  # what the sender connects to (IDNA-encoded)
        literal = literal_address(host)
        if literal is not None:
            self._refuse_unsafe(url, host, [literal], field, resolved=False)
            return url
        if _is_localhost(host):
            raise UnsafeUrl(
                f"{field} {url!r} names localhost, the server itself; {self._advice()}",
                field=field,
                reason="localhost",
            )
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            answers = _LOOKUPS.submit(self.resolve, host, port).result(self.resolve_timeout)
        except (OSError, UnicodeError, FutureTimeout):
            return url  # not resolvable now: the send-time check decides
        found = [ipaddress.ip_address(a) for a in answers]
        self._refuse_unsafe(url, host, found, field, resolved=True)
        return url

    # ---- send time ------------------------------------------------------------------

    def check_scheme(self, url: str, field: str = "webhook_url") -> httpx.URL:
        """The parsed ``url`` when its form and scheme are acceptable (no DNS)."""
        return self._parse(url, field)

    def checked_addresses(self, host: str, port: int) -> list[str]:
        """Every address ``host`` resolves to, once, when all of them are safe.

        Raises ``UnsafeUrl`` when one is not, ``OSError`` when there are none.
        """
        literal = literal_address(host)
        addresses = (
            [literal]
            if literal is not None
            else [ipaddress.ip_address(a) for a in self.resolve(host, port)]
        )
        if not addresses:
            raise OSError(f"{host!r} has no address")
        if not self.allow_private:
            self._refuse_unsafe(None, host, addresses, "url", resolved=literal is None)
        return [str(a) for a in addresses]

    def client(self, timeout: float) -> httpx.Client:
        """An httpx client that connects only to checked addresses and follows no redirect."""
        return httpx.Client(
            transport=GuardedTransport(self),
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,
        )

    # ---- shared ---------------------------------------------------------------------

    def _advice(self) -> str:
        return (
            "webhooks go to public addresses only "
            "(CREDITBOOK_WEBHOOK_ALLOW_PRIVATE=true allows private ones, for development)"
        )

    def _parse(self, url: str, field: str) -> httpx.URL:
        schemes = ("https",) if self.require_https else ("http", "https")
        shape = f"an absolute {' or '.join(schemes)} URL of at most {MAX_URL_LENGTH} characters"
        if len(url) > MAX_URL_LENGTH or any(ord(c) <= 32 or ord(c) == 127 for c in url):
            raise InvalidInput(f"{field} must be {shape}", field=field)
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, ValueError, TypeError):
            raise InvalidInput(f"{field} {url!r} must be {shape}", field=field) from None
        if parsed.scheme == "http" and self.require_https:
            raise UnsafeUrl(
                f"{field} {url!r} must use https: plain http is allowed in development only",
                field=field,
                reason="https_required",
            )
        if parsed.scheme not in schemes or not parsed.host:
            raise InvalidInput(f"{field} {url!r} must be {shape}", field=field)
        return parsed

    def _refuse_unsafe(
        self,
        url: str | None,
        host: str,
        addresses: Sequence[IPAddress],
        field: str,
        *,
        resolved: bool,
    ) -> None:
        for address in addresses:
            why = unsafe_reason(address)
            if why is None:
                continue
            spelled = str(address)
            if resolved:
                target = f"{host} resolves to {spelled}"
            elif _is_standard_literal(host):
                target = host.strip("[]")
            else:  # an odd spelling: say which address it is
                target = f"{host} is {spelled}"
            subject = f"{field} {url!r} is refused: " if url is not None else ""
            raise UnsafeUrl(
                f"{subject}{target}, {why}; {self._advice()}",
                field=field,
                address=spelled,
                reason=why,
            )


class _PinnedBackend(httpcore.SyncBackend):
    """Resolves and checks the host once per connection, then connects to that address."""

    def __init__(self, guard: OutboundGuard) -> None:
        self._guard = guard

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = self._guard.checked_addresses(host, port)
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host!r}: {exc}") from exc
        failure: Exception | None = None
        for address in addresses[:MAX_ADDRESSES_TRIED]:
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport over a connection pool that connects through ``_PinnedBackend``."""

    def __init__(self, guard: OutboundGuard) -> None:
        super().__init__(trust_env=False)
        # httpx offers no way to hand its pool a network backend: build the same pool
        # (httpx's default TLS context and limits) over the pinning backend.
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=10,
            max_keepalive_connections=0,
            network_backend=_PinnedBackend(guard),
        )
