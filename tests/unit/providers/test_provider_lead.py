"""Leads: a stable fingerprint for dedupe, and what each feature needs from a lead."""

from __future__ import annotations

import pytest

from creditbook.adapters.providers import Lead, ProviderError, Result


def test_the_fingerprint_ignores_case_spacing_and_url_decoration() -> None:
    a = Lead(
        first_name="Ada",
        last_name="Lovelace",
        company_domain="www.Acme.com",
        linkedin_url="https://www.linkedin.com/in/ada/",
    )
    b = Lead(
        first_name=" ada ",
        last_name="LOVELACE",
        company_domain="acme.com",
        linkedin_url="linkedin.com/in/ada",
    )
    assert a.fingerprint() == b.fingerprint()
    assert len(a.fingerprint()) == 32


def test_the_fingerprint_is_the_same_across_runs_and_differs_between_people() -> None:
    ada = Lead(first_name="Ada", last_name="Lovelace", company_domain="acme.com")
    # A fixed value: the fingerprint is stored with dedupe keys, so it must never drift.
    assert ada.fingerprint() == Lead("Ada", "Lovelace", None, "acme.com").fingerprint()
    assert ada.fingerprint() != Lead("Ada", "Byron", None, "acme.com").fingerprint()
    assert Lead(first_name="ab", last_name="c").fingerprint() != Lead("a", "bc").fingerprint()


def test_email_finder_needs_both_names_and_a_domain_or_company() -> None:
    assert Lead("Ada", "Lovelace", company_name="Acme").missing_inputs("email_finder") == []
    assert Lead("Ada", "Lovelace", company_domain="a.com").missing_inputs("email_finder") == []
    assert Lead(first_name="Ada").missing_inputs("email_finder") == [
        "last_name",
        "company_domain|company_name",
    ]


def test_linkedin_enrichment_needs_a_url_or_name_and_company() -> None:
    assert (
        Lead(linkedin_url="https://linkedin.com/in/x").missing_inputs("linkedin_enrichment") == []
    )
    assert Lead("Ada", "Lovelace", "Acme").missing_inputs("linkedin_enrichment") == []
    assert Lead("Ada", "Lovelace").missing_inputs("linkedin_enrichment") == [
        "linkedin_url",
        "company_name",
    ]


def test_phone_finder_needs_a_url_an_email_or_name_and_domain() -> None:
    assert Lead(email="ada@acme.com").missing_inputs("phone_finder") == []
    assert Lead(linkedin_url="https://linkedin.com/in/x").missing_inputs("phone_finder") == []
    assert Lead("Ada", "Lovelace", company_domain="acme.com").missing_inputs("phone_finder") == []
    assert Lead("Ada", "Lovelace", company_name="Acme").missing_inputs("phone_finder") == [
        "linkedin_url|email",
        "company_domain",
    ]


def test_ai_variable_needs_nothing_from_the_lead() -> None:
    assert Lead().missing_inputs("ai_variable") == []


def test_blank_fields_count_as_missing() -> None:
    assert Lead(first_name="  ", last_name="L", company_name="A").missing_inputs(
        "email_finder"
    ) == ["first_name"]


def test_a_lead_is_built_from_a_dict_ignoring_unknown_keys_and_blanks() -> None:
    lead = Lead.from_mapping({"first_name": " Ada ", "email": "", "shoe_size": 38})
    assert lead == Lead(first_name="Ada")
    assert lead.to_dict() == {"first_name": "Ada"}


def test_a_result_refuses_an_outcome_its_feature_does_not_have() -> None:
    with pytest.raises(ProviderError, match="valid outcomes: found, not_found"):
        Result("phone_finder", "deliverable", provider="x")
    assert Result("custom_feature", "anything").outcome == "anything"
