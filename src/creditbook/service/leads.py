"""Reading leads for enrichment jobs: CSV or JSON in, plain dicts out; sandbox leads for demos.

Parsing never rejects a whole file for one bad row: every row becomes a dict
(possibly empty) and the job validates each lead on its own, so a row
missing inputs gets a per-row ``MISSING_INPUTS`` error while the rest run.
Headers are matched loosely (``First Name``, ``first_name``, ``firstName``
all mean ``first_name``); unknown columns are kept but ignored by providers.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from creditbook.domain.errors import InvalidInput

LEAD_FIELDS = (
    "first_name",
    "last_name",
    "company_name",
    "company_domain",
    "linkedin_url",
    "email",
    "phone",
)

_ALIASES = {
    "firstname": "first_name",
    "first": "first_name",
    "lastname": "last_name",
    "last": "last_name",
    "company": "company_name",
    "companyname": "company_name",
    "domain": "company_domain",
    "companydomain": "company_domain",
    "website": "company_domain",
    "linkedin": "linkedin_url",
    "linkedinurl": "linkedin_url",
    "emailaddress": "email",
    "phonenumber": "phone",
}
_NON_ALNUM = re.compile(r"[^a-z0-9]")


def canonical_field(name: str) -> str:
    """``First Name`` -> ``first_name``; names that are not lead fields come back as given."""
    squashed = _NON_ALNUM.sub("", name.casefold())
    for known in LEAD_FIELDS:
        if squashed == known.replace("_", ""):
            return known
    return _ALIASES.get(squashed, name.strip())


def normalize_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row with canonical keys; blank values dropped."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key is None:
            continue
        if isinstance(value, str):
            value = value.strip()
            if not value:
                continue
        elif value is None:
            continue
        out[canonical_field(str(key))] = value
    return out


def parse_csv(text: str) -> list[dict[str, Any]]:
    """Rows of a CSV with a header line."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    if not reader.fieldnames:
        raise InvalidInput("the CSV file is empty: expected a header line such as first_name,...")
    return [normalize_row(row) for row in reader]


def parse_json(text: str) -> list[Any]:
    """A JSON array of lead objects, or ``{"leads": [...]}``. Non-objects are kept as they
    are so the job can report them per row."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"the JSON leads are not valid JSON: {exc}") from None
    if isinstance(data, Mapping) and "leads" in data:
        data = data["leads"]
    if not isinstance(data, list):
        raise InvalidInput('JSON leads must be an array of objects or {"leads": [...]}')
    return [normalize_row(row) if isinstance(row, Mapping) else row for row in data]


def read_leads(path: Path) -> list[Any]:
    """Leads from a ``.csv`` or ``.json`` file (by extension; CSV otherwise)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot read leads file {str(path)!r}: {exc.strerror}") from None
    if path.suffix.casefold() in (".json", ".jsonl"):
        return parse_json(text)
    return parse_csv(text)


_FIRST = ("Ada", "Grace", "Alan", "Linus", "Barbara", "Ken", "Margaret", "Dennis", "Frances")
_LAST = ("Lovelace", "Hopper", "Turing", "Torvalds", "Liskov", "Thompson", "Hamilton", "Ritchie")
_COMPANIES = ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Tyrell")


def sample_leads(count: int, *, start: int = 0) -> list[dict[str, str]]:
    """``count`` distinct, plausible leads (deterministic) for demos and benchmarks."""
    leads = []
    for i in range(start, start + count):
        company = _COMPANIES[i % len(_COMPANIES)]
        lead = {
            "first_name": _FIRST[i % len(_FIRST)],
            "last_name": f"{_LAST[(i // len(_FIRST)) % len(_LAST)]}{i}",
            "company_name": f"{company} {i // 64}",
            "company_domain": f"{company.casefold()}{i // 64}.example",
        }
        if i % 3 == 0:
            lead["linkedin_url"] = f"https://www.linkedin.com/in/lead-{i}"
        leads.append(lead)
    return leads
