"""Reading leads for enrichment jobs, and the plain values the job API returns."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from creditbook.adapters.providers import Lead
from creditbook.domain.errors import InvalidInput
from creditbook.service.enrichment import EnrichmentJob, Estimate, ItemResult, JobError
from creditbook.service.leads import (
    canonical_field,
    parse_csv,
    parse_json,
    read_leads,
    sample_leads,
)


def test_csv_headers_are_matched_loosely_and_blank_cells_dropped() -> None:
    rows = parse_csv(
        "\ufeffFirst Name,lastName,Company,Website,LinkedIn URL,Notes\n"
        "Ada,Lovelace,Acme,acme.example,,vip\n"
    )
    assert rows == [
        {
            "first_name": "Ada",
            "last_name": "Lovelace",
            "company_name": "Acme",
            "company_domain": "acme.example",
            "Notes": "vip",
        }
    ]


def test_json_accepts_an_array_or_a_leads_object_and_keeps_bad_rows_for_per_row_errors() -> None:
    assert parse_json('[{"firstName": "Ada"}, 3]') == [{"first_name": "Ada"}, 3]
    assert parse_json('{"leads": [{"email": "a@b.example"}]}') == [{"email": "a@b.example"}]


@pytest.mark.parametrize("text", ["{not json", '{"rows": []}', '"a string"'])
def test_json_that_is_not_a_list_of_leads_is_refused_with_what_is_expected(text: str) -> None:
    with pytest.raises(InvalidInput, match="JSON"):
        parse_json(text)


def test_an_empty_csv_is_refused() -> None:
    with pytest.raises(InvalidInput, match="header"):
        parse_csv("")


def test_read_leads_picks_the_format_by_extension(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('[{"first_name": "Ada"}]')
    (tmp_path / "a.csv").write_text("first_name\nGrace\n")
    assert read_leads(tmp_path / "a.json") == [{"first_name": "Ada"}]
    assert read_leads(tmp_path / "a.csv") == [{"first_name": "Grace"}]
    with pytest.raises(InvalidInput, match="cannot read"):
        read_leads(tmp_path / "missing.csv")


def test_unknown_headers_are_kept_as_written() -> None:
    assert canonical_field(" Job Title ") == "Job Title"
    assert canonical_field("E-mail") == "email"


def test_sample_leads_are_distinct_and_can_run_every_enrichment_feature() -> None:
    leads = [Lead.from_mapping(row) for row in sample_leads(500)]
    assert len({lead.fingerprint() for lead in leads}) == 500
    for feature in ("email_finder", "linkedin_enrichment", "phone_finder"):
        assert all(not lead.missing_inputs(feature) for lead in leads)
    assert sample_leads(3, start=7) == sample_leads(10)[7:]


def test_a_job_renders_as_the_http_shape_with_its_estimate_and_errors() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    job = EnrichmentJob(
        id="job_1", team_id="team_1", kind="job", status="paused",
        pause_reason="insufficient_credits", features=("email_finder",), provider=None,
        member_id="mem_1", api_key_id=None, leads=2, total=2, processed=1, found=1,
        errors_count=1, credits_spent=5, credits_needed=5, credit_limit=None,
        estimate=Estimate(10, 8, 1, {"email_finder": 1.0}),
        errors=(JobError(1, "email_finder", "MISSING_INPUTS", "lacks", ("last_name",)),),
        created_at=at, updated_at=at, started_at=at, finished_at=None,
    )  # fmt: skip

    shown = job.to_dict()

    assert {k: shown[k] for k in ("id", "status", "pause_reason", "total", "processed")} == {
        "id": "job_1", "status": "paused", "pause_reason": "insufficient_credits",
        "total": 2, "processed": 1,
    }  # fmt: skip
    assert (shown["found"], shown["credits_spent"], shown["credits_needed"]) == (1, 5, 5)
    assert shown["estimate"]["max_credits"] == 10 and shown["estimate"]["expected_credits"] == 8
    assert shown["errors"] == [
        {"lead_index": 1, "feature": "email_finder", "code": "MISSING_INPUTS",
         "message": "lacks", "missing": ["last_name"]}
    ]  # fmt: skip
    assert not job.done


@pytest.mark.parametrize(
    ("state", "outcome", "error", "shown"),
    [
        ("done", "risky", None, "risky"),
        ("error", None, "MISSING_INPUTS", "MISSING_INPUTS"),
        ("held", None, None, "pending"),
        ("cancelled", None, None, "cancelled"),
    ],
)
def test_an_item_status_is_its_outcome_error_or_state(
    state: str, outcome: str | None, error: str | None, shown: str
) -> None:
    assert ItemResult("email_finder", state, outcome, None, 0, None, error).status == shown
