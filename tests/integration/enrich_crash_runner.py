"""Runs one enrichment job with a slow sandbox, to be killed with SIGKILL by a test.

Usage: python enrich_crash_runner.py DATABASE_URL TEAM_ID JOB_ID
"""

from __future__ import annotations

import asyncio
import sys

import creditbook
from creditbook.adapters.providers import Lead, ProviderRegistry, Result, SandboxProvider
from creditbook.service.enrichment import EnrichmentOptions, EnrichmentService


class SlowSandbox(SandboxProvider):
    """The sandbox, 5 ms per answer: keeps items ``held`` long enough to be killed there."""

    async def lookup(self, lead: Lead, *, prompt: str | None = None) -> Result:
        await asyncio.sleep(0.005)
        return await super().lookup(lead, prompt=prompt)


def main() -> None:
    url, team_id, job_id = sys.argv[1:4]
    book = creditbook.open(url)

    def registry() -> ProviderRegistry:
        found = ProviderRegistry.from_catalog(book.catalog)
        for feature in ("email_finder", "phone_finder"):
            found.add(SlowSandbox(feature))
        return found

    svc = EnrichmentService(
        book.kernel,
        providers={"default": registry},
        options=EnrichmentOptions(chunk_size=16, concurrency=4),
    )
    svc.run_sync(team_id, job_id)


if __name__ == "__main__":
    main()
