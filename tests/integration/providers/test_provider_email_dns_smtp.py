"""The email finder against a real DNS server and a real SMTP server on loopback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from provider_stubs import DnsStub, SmtpStub

from creditbook.adapters.providers import (
    DnsPythonResolver,
    EmailFinderProvider,
    Lead,
    SmtpProbeSettings,
)

pytestmark = pytest.mark.anyio

ADA = Lead(first_name="Ada", last_name="Lovelace", company_domain="acme.example")

RECORDS = {
    ("acme.example", "MX"): ["10 mx.acme.example.", "20 backup.acme.example."],
    ("mx.acme.example", "A"): ["127.0.0.1"],
    ("weblike.example", "A"): ["127.0.0.1"],
    ("nomail.example", "TXT"): ['"v=spf1 -all"'],
}


# Generous: the stub answers every query at once, and a loaded 2-core CI machine has
# missed a 0.6 s lifetime; a missing record is an answer (NXDOMAIN), not a timeout.
def _resolver(stub: DnsStub, lifetime: float = 4.0) -> DnsPythonResolver:
    return DnsPythonResolver(
        ["127.0.0.1"], port=stub.port, timeout=min(2.0, lifetime), lifetime=lifetime
    )


def _finder(stub: DnsStub, lifetime: float = 4.0, **probe: Any) -> EmailFinderProvider:
    settings = SmtpProbeSettings(**probe) if probe else None
    return EmailFinderProvider(_resolver(stub, lifetime), probe=settings)


async def test_dnspython_resolver_reads_mx_records_in_preference_order(
    dns_stub: Callable[..., DnsStub],
) -> None:
    resolver = _resolver(dns_stub(RECORDS))
    assert await resolver.mx("acme.example") == [
        (10, "mx.acme.example"),
        (20, "backup.acme.example"),
    ]
    assert await resolver.addresses("mx.acme.example") == ["127.0.0.1"]
    assert await resolver.mx("missing.example") == []


async def test_a_domain_with_mx_gives_a_risky_first_dot_last_without_the_probe(
    dns_stub: Callable[..., DnsStub],
) -> None:
    result = await _finder(dns_stub(RECORDS)).lookup(ADA)
    assert (result.outcome, result.value) == ("risky", "ada.lovelace@acme.example")
    assert result.data["mx"] == "mx.acme.example"


async def test_a_domain_without_mx_or_address_is_undeliverable(
    dns_stub: Callable[..., DnsStub],
) -> None:
    stub = dns_stub(RECORDS)
    for domain in ("nomail.example", "missing.example"):
        lead = Lead(first_name="Ada", last_name="Lovelace", company_domain=domain)
        assert (await _finder(stub).lookup(lead)).outcome == "undeliverable"


async def test_a_domain_with_only_an_address_record_receives_mail_there(
    dns_stub: Callable[..., DnsStub],
) -> None:
    lead = Lead(first_name="Ada", last_name="Lovelace", company_domain="weblike.example")
    result = await _finder(dns_stub(RECORDS)).lookup(lead)
    assert (result.outcome, result.data["mx"]) == ("risky", "weblike.example")


async def test_a_dns_server_that_never_answers_gives_unknown(
    dns_stub: Callable[..., DnsStub],
) -> None:
    stub = dns_stub(RECORDS, drop={"acme.example"})
    result = await _finder(stub, lifetime=0.6).lookup(ADA)  # it waits out the lifetime
    assert result.outcome == "unknown"
    assert ("acme.example", "MX") in stub.queries


async def test_the_probe_finds_the_mailbox_the_server_accepts(
    dns_stub: Callable[..., DnsStub],
) -> None:
    async with SmtpStub(mailboxes={"alovelace@acme.example"}) as smtp:
        finder = _finder(dns_stub(RECORDS), enabled=True, port=smtp.port, timeout=2)
        result = await finder.lookup(ADA)
    assert (result.outcome, result.value) == ("deliverable", "alovelace@acme.example")
    assert smtp.commands[0].startswith("HELO ")
    assert smtp.commands[1].startswith("MAIL FROM:<")
    assert "RCPT TO:<ada.lovelace@acme.example>" in smtp.commands
    assert smtp.commands[-1] == "QUIT"


async def test_the_probe_calls_a_domain_that_accepts_anything_risky(
    dns_stub: Callable[..., DnsStub],
) -> None:
    async with SmtpStub(mailboxes=set(), catch_all=True) as smtp:
        finder = _finder(dns_stub(RECORDS), enabled=True, port=smtp.port, timeout=2)
        result = await finder.lookup(ADA)
    assert (result.outcome, result.data["verification"]) == ("risky", "catch_all")


async def test_the_probe_calls_a_domain_that_rejects_every_candidate_undeliverable(
    dns_stub: Callable[..., DnsStub],
) -> None:
    async with SmtpStub(mailboxes={"someone.else@acme.example"}) as smtp:
        finder = _finder(dns_stub(RECORDS), enabled=True, port=smtp.port, timeout=2)
        result = await finder.lookup(ADA)
    assert result.outcome == "undeliverable"
    assert sum(c.startswith("RCPT TO:") for c in smtp.commands) == 7  # canary + 6 candidates


async def test_a_greylisting_server_gives_unknown(dns_stub: Callable[..., DnsStub]) -> None:
    async with SmtpStub(mailboxes=set(), rcpt_code=451) as smtp:
        finder = _finder(dns_stub(RECORDS), enabled=True, port=smtp.port, timeout=2)
        result = await finder.lookup(ADA)
    assert result.outcome == "unknown"


async def test_a_mail_server_that_refuses_connections_gives_unknown(
    dns_stub: Callable[..., DnsStub],
) -> None:
    async with SmtpStub(mailboxes=set()) as smtp:
        closed_port = smtp.port
    finder = _finder(dns_stub(RECORDS), enabled=True, port=closed_port, timeout=2)
    result = await finder.lookup(ADA)
    assert result.outcome == "unknown"
    assert result.data["reason"].startswith("smtp:")
