"""Find a person's work email address from their name and company domain.

The finder builds candidate addresses from common patterns (``first.last``,
``flast``, ``first``, ``firstlast``, ``first_last``, ``last``, ...), keeps those
``email-validator`` accepts (syntax only: DNS is done here, through an
injectable ``MxResolver``), then decides:

=====================================  ==============================================
what was seen                          outcome (value)
=====================================  ==============================================
no first/last name or no domain        ``not_found`` (no value)
DNS timed out or failed (SERVFAIL)     ``unknown`` (best candidate)
no MX and no A record                  ``undeliverable`` (best candidate)
mail server exists, probe off          ``risky`` (best candidate, ``first.last``)
probe: server accepts a random address ``risky`` (catch-all domain: nothing proves it)
probe: a candidate gets 250/251        ``deliverable`` (that candidate)
probe: every candidate gets 5xx        ``undeliverable`` (best candidate)
probe: 4xx, timeout, refused           ``unknown`` (best candidate)
=====================================  ==============================================

Without the SMTP probe (off by default: port 25 is often blocked and probing
is frowned upon) the finder cannot tell which pattern is right, so a domain
that receives mail yields ``risky`` for the most common pattern: that is a
billable outcome, as the catalog bills ``risky`` addresses. A domain with no MX
but an A record receives mail at that host (RFC 5321 implicit MX).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import dns.asyncresolver
import dns.exception
import dns.resolver
from email_validator import EmailNotValidError, validate_email

from creditbook.adapters.providers.base import EMAIL_FINDER, Lead, ProviderError, Result

#: Local-part patterns, most common first; the first valid one is the "best" candidate.
DEFAULT_PATTERNS: tuple[str, ...] = (
    "{first}.{last}",
    "{f}{last}",
    "{first}",
    "{first}{last}",
    "{first}_{last}",
    "{last}",
    "{f}.{last}",
    "{first}{l}",
    "{last}.{first}",
)

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


class DnsTimeout(Exception):
    """The resolver could not get an answer (timeout, SERVFAIL, no nameserver)."""


class MxResolver(Protocol):
    """The DNS questions the finder asks."""

    async def mx(self, domain: str) -> list[tuple[int, str]]:
        """(preference, host) pairs; empty when the domain has none or does not exist."""
        ...

    async def addresses(self, host: str) -> list[str]:
        """IPv4 addresses of ``host``; empty when it has none or does not exist."""
        ...


class DnsPythonResolver:
    """``MxResolver`` over dnspython's asyncio resolver, with explicit nameservers."""

    def __init__(
        self,
        nameservers: Sequence[str] | None = None,
        *,
        port: int = 53,
        timeout: float = 2.0,
        lifetime: float = 4.0,
    ) -> None:
        # configure=False: never read /etc/resolv.conf when nameservers are given.
        self._resolver = dns.asyncresolver.Resolver(configure=not nameservers)
        if nameservers:
            self._resolver.nameservers = list(nameservers)
        self._resolver.port = port
        self._resolver.timeout = timeout
        self._resolver.lifetime = lifetime

    async def _query(self, name: str, rdtype: str) -> list[str]:
        try:
            answer = await self._resolver.resolve(name, rdtype)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
            raise DnsTimeout(f"{rdtype} {name}: {exc}") from exc
        return [rdata.to_text() for rdata in answer]

    async def mx(self, domain: str) -> list[tuple[int, str]]:
        out: list[tuple[int, str]] = []
        for text in await self._query(domain, "MX"):
            preference, host = text.split(maxsplit=1)
            out.append((int(preference), host.rstrip(".")))
        return sorted(out)

    async def addresses(self, host: str) -> list[str]:
        return await self._query(host, "A")


@dataclass
class FakeMxResolver:
    """An in-memory ``MxResolver`` for unit tests; domains in ``timeouts`` time out."""

    mx_records: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    a_records: dict[str, list[str]] = field(default_factory=dict)
    timeouts: set[str] = field(default_factory=set)

    async def mx(self, domain: str) -> list[tuple[int, str]]:
        if domain in self.timeouts:
            raise DnsTimeout(f"MX {domain}: timed out")
        return sorted(self.mx_records.get(domain, []))

    async def addresses(self, host: str) -> list[str]:
        if host in self.timeouts:
            raise DnsTimeout(f"A {host}: timed out")
        return list(self.a_records.get(host, []))


@dataclass(frozen=True)
class SmtpProbeSettings:
    """How to ask a mail server whether it accepts an address (RCPT TO, no DATA)."""

    enabled: bool = False
    port: int = 25
    helo: str = "creditbook.invalid"
    mail_from: str = "probe@creditbook.invalid"
    timeout: float = 10.0


class ProbeVerdict:
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    UNSURE = "unsure"


class SmtpProber:
    """One SMTP session: HELO, MAIL FROM, then RCPT TO per address, then QUIT."""

    def __init__(self, settings: SmtpProbeSettings) -> None:
        self.settings = settings

    async def probe(self, host: str, addresses: Sequence[str]) -> list[str]:
        """A ``ProbeVerdict`` per address, in order; raises ``OSError``/``TimeoutError``."""
        async with asyncio.timeout(self.settings.timeout):
            reader, writer = await asyncio.open_connection(host, self.settings.port)
            try:
                return await self._session(reader, writer, addresses)
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

    async def _session(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, addresses: Sequence[str]
    ) -> list[str]:
        async def command(line: str | None) -> int:
            if line is not None:
                writer.write(line.encode("ascii", "replace") + b"\r\n")
                await writer.drain()
            while True:
                raw = await reader.readline()
                if not raw:
                    raise ConnectionError("the mail server closed the connection")
                text = raw.decode("ascii", "replace")
                # "250-..." continues a multi-line reply; "250 ..." ends it.
                if len(text) < 4 or text[3] != "-":
                    try:
                        return int(text[:3])
                    except ValueError as exc:
                        raise ConnectionError(f"not an SMTP reply: {text!r}") from exc

        if await command(None) != 220:
            return [ProbeVerdict.UNSURE] * len(addresses)
        if await command(f"HELO {self.settings.helo}") != 250:
            return [ProbeVerdict.UNSURE] * len(addresses)
        if await command(f"MAIL FROM:<{self.settings.mail_from}>") != 250:
            return [ProbeVerdict.UNSURE] * len(addresses)
        verdicts: list[str] = []
        for address in addresses:
            code = await command(f"RCPT TO:<{address}>")
            if code in (250, 251):
                verdicts.append(ProbeVerdict.ACCEPTED)
            elif 500 <= code < 600:
                verdicts.append(ProbeVerdict.REJECTED)
            else:
                verdicts.append(ProbeVerdict.UNSURE)
        with contextlib.suppress(ConnectionError):
            await command("QUIT")
        return verdicts


def _ascii_slug(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _NON_ALNUM.sub("", folded.casefold())


def guess_domain(lead: Lead) -> str | None:
    """The lead's mail domain: its company domain, else ``<company name>.com``."""
    if lead.company_domain and lead.company_domain.strip():
        domain = lead.company_domain.strip().casefold()
        for prefix in ("https://", "http://"):
            domain = domain.removeprefix(prefix)
        return domain.removeprefix("www.").split("/", 1)[0].rstrip(".") or None
    if lead.company_name:
        slug = _ascii_slug(lead.company_name)
        return f"{slug}.com" if slug else None
    return None


def candidate_addresses(
    lead: Lead, patterns: Sequence[str] = DEFAULT_PATTERNS
) -> tuple[str | None, list[str]]:
    """The lead's domain and its syntactically valid candidate addresses, best first."""
    first = _ascii_slug(lead.first_name or "")
    last = _ascii_slug(lead.last_name or "")
    domain = guess_domain(lead)
    if not (first and last and domain):
        return domain, []
    names = {"first": first, "last": last, "f": first[0], "l": last[0]}
    out: list[str] = []
    for pattern in patterns:
        local = pattern.format_map(names)
        try:
            valid = validate_email(
                f"{local}@{domain}", check_deliverability=False, allow_smtputf8=False
            )
        except EmailNotValidError:
            continue
        if valid.normalized not in out:
            out.append(valid.normalized)
    return domain, out


class EmailFinderProvider:
    """Pattern candidates + MX check (+ optional SMTP RCPT probe) -> email_finder result."""

    def __init__(
        self,
        resolver: MxResolver,
        *,
        probe: SmtpProbeSettings | None = None,
        patterns: Sequence[str] = DEFAULT_PATTERNS,
        max_probed: int = 6,
        name: str = "email",
        prober: SmtpProber | None = None,
    ) -> None:
        for pattern in patterns:
            try:
                pattern.format_map({"first": "a", "last": "b", "f": "a", "l": "b"})
            except (KeyError, ValueError) as exc:
                raise ProviderError(
                    f"email pattern {pattern!r} is invalid ({exc}); "
                    "use the placeholders {first}, {last}, {f}, {l}",
                    pattern=pattern,
                ) from exc
        self._name = name
        self._resolver = resolver
        self._probe = probe or SmtpProbeSettings()
        self._prober = prober or SmtpProber(self._probe)
        self._patterns = tuple(patterns)
        self._max_probed = max_probed

    @property
    def name(self) -> str:
        return self._name

    @property
    def feature(self) -> str:
        return EMAIL_FINDER

    def _result(self, outcome: str, value: str | None, **data: str) -> Result:
        return Result(EMAIL_FINDER, outcome, value, data, self._name)

    async def lookup(self, lead: Lead, *, prompt: str | None = None) -> Result:
        domain, candidates = candidate_addresses(lead, self._patterns)
        if not candidates or domain is None:
            return self._result("not_found", None, reason="no name or domain to build from")
        best = candidates[0]
        try:
            mx = await self._resolver.mx(domain)
            hosts = [host for _, host in mx] if mx else []
            if not hosts and await self._resolver.addresses(domain):
                hosts = [domain]
        except DnsTimeout as exc:
            return self._result("unknown", best, reason=f"dns: {exc}")
        if not hosts:
            return self._result("undeliverable", best, reason="domain has no MX or A record")
        if not self._probe.enabled:
            return self._result("risky", best, mx=hosts[0], verification="mx_only")
        return await self._probe_hosts(domain, hosts, candidates)

    async def _probe_hosts(self, domain: str, hosts: list[str], candidates: list[str]) -> Result:
        best = candidates[0]
        host = hosts[0]
        try:
            ips = await self._resolver.addresses(host)
        except DnsTimeout as exc:
            return self._result("unknown", best, mx=host, reason=f"dns: {exc}")
        if not ips:
            return self._result("unknown", best, mx=host, reason="mail server has no address")
        # A random local part no one owns: a server that accepts it accepts anything.
        canary = f"cb-{secrets.token_hex(6)}@{domain}"
        probed = candidates[: self._max_probed]
        try:
            verdicts = await self._prober.probe(ips[0], [canary, *probed])
        except (OSError, TimeoutError, ConnectionError) as exc:
            return self._result("unknown", best, mx=host, reason=f"smtp: {exc or type(exc)}")
        canary_verdict, rest = verdicts[0], verdicts[1:]
        if canary_verdict == ProbeVerdict.ACCEPTED:
            return self._result("risky", best, mx=host, verification="catch_all")
        for address, verdict in zip(probed, rest, strict=True):
            if verdict == ProbeVerdict.ACCEPTED:
                return self._result("deliverable", address, mx=host, verification="smtp")
        if all(v == ProbeVerdict.REJECTED for v in rest):
            return self._result("undeliverable", best, mx=host, verification="smtp")
        return self._result("unknown", best, mx=host, reason="smtp: temporary answer")


def resolver_from_config(config: Mapping[str, object]) -> DnsPythonResolver:
    """A ``DnsPythonResolver`` from ``{"nameservers": [...], "port": 53, "timeout": 2}``."""
    nameservers = config.get("nameservers")
    if nameservers is not None and not (
        isinstance(nameservers, list) and all(isinstance(n, str) for n in nameservers)
    ):
        raise ProviderError("dns.nameservers must be a list of IP addresses", value=nameservers)
    port = config.get("port", 53)
    timeout = config.get("timeout", 2.0)
    if not isinstance(port, int) or not isinstance(timeout, int | float):
        raise ProviderError("dns.port must be an integer and dns.timeout a number of seconds")
    return DnsPythonResolver(
        nameservers, port=port, timeout=float(timeout), lifetime=float(timeout) * 2
    )
