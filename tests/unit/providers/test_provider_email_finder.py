"""The email finder's decisions, with an in-memory resolver and a scripted SMTP prober."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from creditbook.adapters.providers import (
    EmailFinderProvider,
    FakeMxResolver,
    Lead,
    ProviderError,
    SmtpProbeSettings,
    candidate_addresses,
)
from creditbook.adapters.providers.email_finder import SmtpProber

pytestmark = pytest.mark.anyio

ADA = Lead(first_name="Ada", last_name="Lovelace", company_domain="acme.example")
RESOLVER = FakeMxResolver(
    mx_records={"acme.example": [(20, "mx2.acme.example"), (10, "mx1.acme.example")]},
    a_records={"mx1.acme.example": ["192.0.2.1"], "site.example": ["192.0.2.9"]},
    timeouts={"slow.example"},
)


def test_candidates_follow_the_common_patterns_best_first() -> None:
    domain, candidates = candidate_addresses(ADA)
    assert domain == "acme.example"
    assert candidates[:6] == [
        "ada.lovelace@acme.example",
        "alovelace@acme.example",
        "ada@acme.example",
        "adalovelace@acme.example",
        "ada_lovelace@acme.example",
        "lovelace@acme.example",
    ]


def test_candidates_fold_accents_and_guess_a_domain_from_the_company_name() -> None:
    lead = Lead(first_name="Zoé", last_name="Saint-Exupéry", company_name="Café Lumière SA")
    domain, candidates = candidate_addresses(lead)
    assert domain == "cafelumieresa.com"
    assert candidates[0] == "zoe.saintexupery@cafelumieresa.com"


def test_no_candidates_without_both_names() -> None:
    assert candidate_addresses(Lead(first_name="Ada", company_domain="acme.example"))[1] == []


async def test_a_domain_with_mx_gives_risky_best_pattern_when_the_probe_is_off() -> None:
    result = await EmailFinderProvider(RESOLVER).lookup(ADA)
    assert (result.outcome, result.value) == ("risky", "ada.lovelace@acme.example")
    assert result.data == {"mx": "mx1.acme.example", "verification": "mx_only"}


@pytest.mark.parametrize(
    ("domain", "outcome"),
    [("nowhere.example", "undeliverable"), ("site.example", "risky"), ("slow.example", "unknown")],
)
async def test_dns_answers_decide_the_outcome(domain: str, outcome: str) -> None:
    lead = Lead(first_name="Ada", last_name="Lovelace", company_domain=domain)
    assert (await EmailFinderProvider(RESOLVER).lookup(lead)).outcome == outcome


async def test_a_lead_without_names_is_not_found() -> None:
    result = await EmailFinderProvider(RESOLVER).lookup(Lead(company_domain="acme.example"))
    assert (result.outcome, result.value) == ("not_found", None)


class ScriptedProber(SmtpProber):
    """Answers each RCPT from a dict (default: rejected); records what was asked."""

    def __init__(self, verdicts: dict[str, str], default: str = "rejected") -> None:
        super().__init__(SmtpProbeSettings(enabled=True))
        self.verdicts = verdicts
        self.default = default
        self.asked: list[tuple[str, list[str]]] = []

    async def probe(self, host: str, addresses: Sequence[str]) -> list[str]:
        self.asked.append((host, list(addresses)))
        return [self.verdicts.get(a, self.default) for a in addresses]


def _probing(prober: SmtpProber) -> EmailFinderProvider:
    return EmailFinderProvider(
        RESOLVER, probe=SmtpProbeSettings(enabled=True), prober=prober, max_probed=3
    )


async def test_the_probe_asks_the_preferred_mail_server_with_a_canary_first() -> None:
    prober = ScriptedProber({"alovelace@acme.example": "accepted"})
    result = await _probing(prober).lookup(ADA)
    assert (result.outcome, result.value) == ("deliverable", "alovelace@acme.example")
    host, asked = prober.asked[0]
    assert host == "192.0.2.1"
    assert asked[0].startswith("cb-") and asked[0].endswith("@acme.example")
    assert asked[1:] == [
        "ada.lovelace@acme.example",
        "alovelace@acme.example",
        "ada@acme.example",
    ]


async def test_a_catch_all_server_makes_the_best_candidate_risky() -> None:
    result = await _probing(ScriptedProber({}, default="accepted")).lookup(ADA)
    assert (result.outcome, result.data["verification"]) == ("risky", "catch_all")


async def test_rejected_everywhere_is_undeliverable_and_unsure_is_unknown() -> None:
    assert (await _probing(ScriptedProber({})).lookup(ADA)).outcome == "undeliverable"
    unsure = ScriptedProber({"ada@acme.example": "unsure"})
    assert (await _probing(unsure).lookup(ADA)).outcome == "unknown"


def test_a_pattern_with_an_unknown_placeholder_is_refused() -> None:
    with pytest.raises(ProviderError, match=r"use the placeholders \{first\}"):
        EmailFinderProvider(RESOLVER, patterns=["{first}.{surname}"])
