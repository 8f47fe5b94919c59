"""The sandbox: the same lead always gets the same answer, outcomes follow the rates."""

from __future__ import annotations

from collections import Counter

import phonenumbers
import pytest

from creditbook.adapters.providers import Lead, ProviderError, SandboxProvider

pytestmark = pytest.mark.anyio

LEADS = [
    Lead(f"First{i}", f"Last{i}", f"Company {i}", f"company{i}.example") for i in range(20_000)
]


async def test_the_same_lead_always_gets_the_same_result() -> None:
    lead = Lead("Ada", "Lovelace", "Acme", "acme.example")
    first = await SandboxProvider("email_finder").lookup(lead)
    again = await SandboxProvider("email_finder").lookup(
        Lead("ada", "LOVELACE", "acme", "acme.example")
    )
    assert first == again


async def test_email_outcomes_follow_the_default_rates() -> None:
    sandbox = SandboxProvider("email_finder")
    counts = Counter([(await sandbox.lookup(lead)).outcome for lead in LEADS])
    shares = {k: v / len(LEADS) for k, v in counts.items()}
    expected = {"deliverable": 0.55, "risky": 0.10, "undeliverable": 0.15, "unknown": 0.10}
    expected["not_found"] = 0.10
    for outcome, share in expected.items():
        assert share == pytest.approx(shares[outcome], abs=0.015), outcome


async def test_a_found_email_is_first_dot_last_at_the_domain() -> None:
    sandbox = SandboxProvider("email_finder", rates={"deliverable": 1.0})
    result = await sandbox.lookup(Lead("Zoé", "De Ville", company_domain="www.acme.example"))
    assert (result.outcome, result.value) == ("deliverable", "zo.deville@acme.example")
    nothing = await SandboxProvider("email_finder", rates={}).lookup(LEADS[0])
    assert (nothing.outcome, nothing.value) == ("not_found", None)


async def test_found_phones_are_valid_e164_numbers_in_a_fictitious_range() -> None:
    sandbox = SandboxProvider("phone_finder", rates={"found": 1.0})
    for lead in LEADS[:300]:
        result = await sandbox.lookup(lead)
        assert result.value is not None
        number = phonenumbers.parse(result.value)
        assert phonenumbers.is_valid_number(number), result.value
        assert result.value[5:10] == "55501"  # +1 AAA 555-01XX, reserved for fiction


async def test_linkedin_and_ai_answers_look_real() -> None:
    lead = Lead("Ada", "Lovelace", "Acme")
    linkedin = await SandboxProvider("linkedin_enrichment", rates={"found": 1.0}).lookup(lead)
    assert linkedin.value is not None
    assert linkedin.value.startswith("https://www.linkedin.com/in/ada-lovelace-")
    ai = await SandboxProvider("ai_variable").lookup(lead, prompt="opener")
    assert ai.outcome == "succeeded"
    assert ai.value is not None and "Ada" in ai.value


def test_rates_must_name_real_outcomes_and_sum_to_at_most_one() -> None:
    with pytest.raises(ProviderError, match="unknown outcomes"):
        SandboxProvider("phone_finder", rates={"deliverable": 0.5})
    with pytest.raises(ProviderError, match="sum to at most 1"):
        SandboxProvider("email_finder", rates={"deliverable": 0.9, "risky": 0.2})
    with pytest.raises(ProviderError, match="cannot answer"):
        SandboxProvider("calling")
