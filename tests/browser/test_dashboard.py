"""The dashboard in a real browser: sign-in, buying, refusals, enrichment jobs, CSV export."""

from __future__ import annotations

import csv
import io
import re

import pytest
from browser_helpers import Pages

pytestmark = pytest.mark.browser

LEADS_CSV = "first_name,last_name,company_name,company_domain,linkedin_url\n" + "".join(
    f"Lead{i},Person{i},Company {i},company{i}.example,https://www.linkedin.com/in/lead-{i}\n"
    for i in range(12)
)


def upload_job(pages: Pages, features: list[str], action: str, csv_text: str) -> None:
    page = pages.page
    page.goto("/dashboard/enrichment")
    page.locator("#leads").set_input_files(
        files=[{"name": "leads.csv", "mimeType": "text/csv", "buffer": csv_text.encode()}]
    )
    for box in page.locator("input[name=features]").all():
        box.set_checked(box.get_attribute("value") in features)
    pages.shot("enrichment")
    page.get_by_role("button", name=action).click()
    page.wait_for_url(re.compile(r".*/dashboard/enrichment/job_[^/]+$"))


def wait_for_status(pages: Pages, status: str, timeout_ms: int = 20_000) -> None:
    pages.page.wait_for_function(
        "s => document.getElementById('job-status')?.textContent === s",
        arg=status,
        timeout=timeout_ms,
    )


def test_admin_signs_in_and_sees_every_page(pages: Pages) -> None:
    page = pages.page
    pages.sign_in(pages.server.admin_key)
    assert page.get_by_role("heading", name="Credits", level=1).is_visible()
    assert pages.available() > 0
    # The charts are inline SVG from the server, each with its table alternative.
    assert page.locator(".chart svg").count() == 3
    assert page.get_by_text("Usage, last 30 days, as a table").is_visible()
    for href, heading in [
        ("/dashboard/usage", "Usage and history"),
        ("/dashboard/buy", "Buy credits"),
        ("/dashboard/enrichment", "Enrichment"),
        ("/dashboard/members", "Members"),
        ("/dashboard/settings", "Settings"),
    ]:
        page.get_by_role("navigation", name="Dashboard").get_by_role("link", name=heading).click()
        page.wait_for_url(f"**{href}")
        assert page.get_by_role("heading", name=heading, level=1).is_visible()
        assert page.locator("nav a[aria-current=page]").inner_text() == heading
        pages.shot(href.rsplit("/", 1)[-1])
    # An admin sets a member's monthly cap.
    page.goto("/dashboard/members")
    row = page.locator("#members tr", has_text=pages.server.member_email)
    row.get_by_label(f"Monthly cap of {pages.server.member_email} (credits)").fill("5000")
    row.get_by_role("button", name="Save").click()
    assert page.get_by_role("status").filter(has_text="5,000 credits a month").is_visible()
    pages.shot("members-saved")
    # ... and the monthly cap of the member's integration key.
    keys = page.locator("#keys tr", has_text="CRM sync")
    assert keys.get_by_role("cell", name="2,000").is_visible()
    keys.get_by_label("Monthly cap of key CRM sync (credits)").fill("2500")
    keys.get_by_role("button", name="Save").click()
    assert (
        page.get_by_role("status").filter(has_text="CRM sync: 2,500 credits a month").is_visible()
    )
    # Settings are saved through the purchase service.
    page.goto("/dashboard/settings")
    page.get_by_label("Alert the admins when the balance falls below (credits)").fill("750")
    page.get_by_role("button", name="Save settings").click()
    assert page.get_by_text("Settings saved.").is_visible()
    assert (
        page.get_by_label("Alert the admins when the balance falls below (credits)").input_value()
        == "750"
    )
    pages.shot("settings-saved")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/dashboard/signin")
    page.goto("/dashboard/usage")
    assert "/dashboard/signin" in page.url


def test_a_wrong_key_is_refused_at_sign_in(pages: Pages) -> None:
    page = pages.page
    page.goto("/dashboard/signin")
    page.get_by_label("API key").fill("cbk.team_x.key_y.not-a-secret")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").filter(has_text="unknown or revoked").is_visible()
    pages.shot("signin-refused")


def test_the_admin_buys_credits_and_the_balance_changes(pages: Pages) -> None:
    page = pages.page
    pages.sign_in(pages.server.admin_key)
    page.goto("/dashboard/buy")
    before = pages.available()
    page.get_by_label("5,000 credits").check()
    assert page.locator("#price-output").inner_text() == "500.00 USD"
    page.get_by_label("Custom amount").check()
    page.get_by_label(re.compile(r"^Credits \(custom")).fill("1234")
    # The live price: credits x price per credit, computed in the page.
    assert page.locator("#price-output").inner_text() == "123.40 USD"
    pages.shot("buy-custom")
    page.get_by_role("button", name="Buy", exact=True).click()
    page.wait_for_url("**/dashboard/buy")
    assert (
        page.get_by_role("status")
        .filter(has_text="Bought 1,234 credits for 123.40 USD")
        .is_visible()
    )
    assert pages.available() == before + 1234
    pages.shot("bought")
    page.goto("/dashboard/")
    assert pages.available() == before + 1234
    # A refund takes the unspent credits back.
    page.goto("/dashboard/buy")
    page.once("dialog", lambda d: d.accept())
    page.locator("#purchases tr", has_text="1,234").get_by_role("button", name="Refund").click()
    assert page.get_by_role("status").filter(has_text="1,234 credits taken back").is_visible()
    assert pages.available() == before
    pages.shot("refunded")


def test_the_member_is_refused_buying_and_admin_settings(pages: Pages) -> None:
    page = pages.page
    pages.sign_in(pages.server.member_key)
    page.goto("/dashboard/buy")
    pages.shot("buy-member")
    assert page.get_by_role("heading", name="Only team admins can buy credits").is_visible()
    assert page.get_by_role("link", name=pages.server.admin_email).is_visible()
    assert page.locator("form.buy").count() == 0
    before = pages.available()
    # Hidden buttons are not the check: a forged POST with a valid CSRF token is refused.
    csrf = page.locator("meta[name=csrf-token]").get_attribute("content")
    refused = page.request.post("/dashboard/buy", form={"csrf": csrf, "package": "1k"})
    assert refused.status == 403
    assert "only team admins can buy credits" in refused.text()
    settings = page.request.post(
        "/dashboard/settings", form={"csrf": csrf, "low_balance_threshold": "1"}
    )
    assert settings.status == 403
    page.goto("/dashboard/buy")
    assert pages.available() == before
    page.goto("/dashboard/settings")
    pages.shot("settings-member")
    assert page.get_by_label(
        "Alert the admins when the balance falls below (credits)"
    ).is_disabled()
    page.goto("/dashboard/members")
    pages.shot("members-member")
    assert page.locator("#members form").count() == 0
    assert page.locator("#keys").count() == 0  # keys are the admins' to see
    page.goto("/dashboard/usage")
    pages.shot("usage-member")
    # A member's history is their own.
    assert page.locator("#usage-by-member tbody tr").count() == 1
    assert pages.server.member_email in page.locator("#usage-by-member").inner_text()


def test_a_csv_upload_runs_a_job_to_the_end(pages: Pages) -> None:
    page = pages.page
    pages.sign_in(pages.server.admin_key)
    upload_job(pages, ["email_finder", "linkedin_enrichment"], "Start the job", LEADS_CSV)
    pages.shot("job-running")
    wait_for_status(pages, "completed")
    page.wait_for_selector("#download-results")
    pages.shot("job-completed")
    assert page.locator("#job-processed").inner_text() == "24"
    with page.expect_download() as info:
        page.locator("#download-results").click()
    rows = list(csv.DictReader(io.StringIO(info.value.path().read_text())))
    assert len(rows) == 12
    assert rows[0]["first_name"] == "Lead0"
    assert {r["linkedin_enrichment_status"] for r in rows} <= {"found", "not_found"}
    spent = int(page.locator("#job-credits").inner_text().replace(",", ""))
    assert spent == sum(
        int(r["email_finder_credits"]) + int(r["linkedin_enrichment_credits"]) for r in rows
    )


def test_an_estimate_and_a_sample_come_before_the_start(pages: Pages) -> None:
    page = pages.page
    pages.sign_in(pages.server.admin_key)
    page.goto("/dashboard/enrichment")
    page.get_by_label("Sample size (leads, for “Run a sample”)").fill("4")
    upload_job(pages, ["email_finder"], "Run a sample", LEADS_CSV)
    wait_for_status(pages, "paused")
    pages.shot("job-sampled")
    assert page.locator("#estimate-max").inner_text() == "60"  # 12 leads x 5 credits
    assert page.locator("#estimate-expected").is_visible()
    page.get_by_role("button", name="Start the job").click()
    wait_for_status(pages, "completed")
    assert page.locator("#job-processed").inner_text() == "12"


def test_a_job_pauses_on_an_empty_balance_and_resumes_after_a_purchase(pages: Pages) -> None:
    page = pages.page
    pages.sign_in(pages.server.broke_admin_key)
    assert pages.available() == 12
    upload_job(pages, ["email_finder"], "Start the job", LEADS_CSV)
    wait_for_status(pages, "paused")
    page.wait_for_selector("#paused")
    pages.shot("job-paused")
    assert "ran out of credits" in page.locator("#pause-reason").inner_text()
    job_url = page.url
    page.locator("#buy-link").click()
    page.wait_for_url("**/dashboard/buy")
    page.get_by_label("1,000 credits").check()
    page.get_by_role("button", name="Buy", exact=True).click()
    assert page.get_by_role("status").filter(has_text="Bought 1,000 credits").is_visible()
    page.goto(job_url)
    page.get_by_role("button", name="Resume").click()
    wait_for_status(pages, "completed")
    pages.shot("job-resumed-completed")
    assert page.locator("#job-processed").inner_text() == "12"
    with page.expect_download() as info:
        page.locator("#download-results").click()
    rows = list(csv.DictReader(io.StringIO(info.value.path().read_text())))
    # Every lead was looked up exactly once, none left pending by the pause.
    assert len(rows) == 12
    assert "pending" not in {r["email_finder_status"] for r in rows}


def test_the_history_filters_and_exports_csv(pages: Pages) -> None:
    page = pages.page
    pages.sign_in(pages.server.admin_key)
    page.goto("/dashboard/usage")
    page.get_by_label("Feature", exact=True).select_option("phone_finder")
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_url("**feature=phone_finder**")
    pages.shot("usage-filtered")
    kinds = page.locator("#ledger tbody tr td:nth-child(3)").all_inner_texts()
    assert kinds and set(kinds) == {"phone_finder"}
    page.get_by_role("link", name="Older entries").click()
    pages.shot("usage-page-2")
    with page.expect_download() as info:
        page.get_by_role("link", name="Export CSV").click()
    download = info.value
    assert download.suggested_filename.startswith("creditbook-ledger-")
    rows = list(csv.DictReader(io.StringIO(download.path().read_text())))
    assert len(rows) > 25
    assert {r["feature"] for r in rows} == {"phone_finder"}
    assert all(int(r["credits"]) == 20 for r in rows if r["kind"] == "charge")


def test_the_dashboard_fits_a_phone(phone_pages: Pages) -> None:
    page = phone_pages.page
    phone_pages.sign_in(phone_pages.server.admin_key)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone ({width}px)"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    for path in ("/dashboard/buy", "/dashboard/usage", "/dashboard/enrichment"):
        phone_pages.goto(path, "phone-" + path.rsplit("/", 1)[-1])
        assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_a_member_signs_in_with_a_link_printed_on_the_console(pages: Pages) -> None:
    page = pages.page
    page.goto("/dashboard/signin")
    page.get_by_label("Email me a one-time sign-in link").fill(pages.server.member_email)
    page.get_by_role("button", name="Send the link").click()
    assert page.get_by_role("status").filter(has_text="sign-in link is on its way").is_visible()
    pages.shot("signin-link-sent")
    url = None
    for _ in range(50):
        found = re.findall(
            r"(http://\S+/dashboard/signin/link\?token=\S+)", pages.server.log_path.read_text()
        )
        if found:
            url = found[-1]
            break
        page.wait_for_timeout(100)
    assert url, "no sign-in link was printed on the server's console"
    page.goto(url)
    pages.shot("signin-link-confirm")
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url("**/dashboard/")
    assert page.get_by_text(pages.server.member_email).first.is_visible()
    pages.shot("credits-via-link")
    # The link is used up.
    page.goto(url)
    page.get_by_role("button", name="Continue").click()
    assert page.get_by_text("already used or expired").is_visible()
