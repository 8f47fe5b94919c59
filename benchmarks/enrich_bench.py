"""Bulk enrichment throughput: a sandbox job of N leads on PostgreSQL (issue 6).

    PYTHONPATH=src python benchmarks/enrich_bench.py \
        --server-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres --leads 100000

Creates a fresh database on the server (dropped at the end unless --keep), a
team with enough purchased credits, warms up with a small job and ANALYZE
(so the planner has statistics, as any production database has), then
creates and runs one job of ``--leads`` leads x ``--features``. It reports:

- lead-features per second for the run (target: >= 2,000);
- the time spent in the charging transactions (reserve = holds, settle =
  captures/releases + item rows) per lead-feature, i.e. the charging overhead,
  against the time spent in provider lookups;
- the job creation time (validating and storing the leads and items).

Standalone: only creditbook and the standard library; prints a JSON line too.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections import Counter
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

import creditbook
from creditbook.service.enrichment import EnrichmentOptions, EnrichmentService
from creditbook.service.leads import sample_leads


def _admin(server_url: str) -> Any:
    return create_engine(server_url, isolation_level="AUTOCOMMIT")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--server-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    parser.add_argument("--database-url", help="use this database instead of creating one")
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--features", default="email_finder,linkedin_enrichment")
    parser.add_argument("--chunk-size", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args()
    features = [f.strip() for f in args.features.split(",") if f.strip()]

    created = None
    url = args.database_url
    if url is None:
        created = f"cb_enrich_bench_{uuid.uuid4().hex[:8]}"
        with _admin(args.server_url).connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{created}"'))
        url = make_url(args.server_url).set(database=created).render_as_string(hide_password=False)
    try:
        return _run(url, args, features)
    finally:
        if created is not None and not args.keep:
            with _admin(args.server_url).connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{created}" WITH (FORCE)'))


def _run(url: str, args: argparse.Namespace, features: list[str]) -> int:
    book = creditbook.open(url)
    assert book.engine is not None
    svc = EnrichmentService(
        book.kernel,
        options=EnrichmentOptions(chunk_size=args.chunk_size, concurrency=args.concurrency),
    )
    timings: Counter[str] = Counter()

    def timed(name: str, fn: Any) -> Any:
        if name == "_lookup_all":

            async def wrapped_async(*a: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return await fn(*a)
                finally:
                    timings[name] += time.perf_counter() - t0

            return wrapped_async

        def wrapped(*a: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*a)
            finally:
                timings[name] += time.perf_counter() - t0

        return wrapped

    team = book.create_team("Benchmark")
    book.grant(team.id, 100_000_000, category="purchased", source="purchase")
    warm = svc.create_job(team.id, sample_leads(2000, start=10_000_000), features)
    svc.run_sync(team.id, warm.id)
    with book.engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    for name in ("_reserve", "_settle", "_lookup_all"):
        setattr(svc, name, timed(name, getattr(svc, name)))

    leads = sample_leads(args.leads)
    t0 = time.perf_counter()
    job = svc.create_job(team.id, leads, features)
    create_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    done = svc.run_sync(team.id, job.id)
    run_s = time.perf_counter() - t0
    audit_clean = book.audit(team.id).clean

    items = done.total
    charging = timings["_reserve"] + timings["_settle"]
    result = {
        "benchmark": "enrich_sandbox_job",
        "database": "postgresql",
        "leads": args.leads,
        "features": features,
        "lead_features": items,
        "status": done.status,
        "found": done.found,
        "credits_spent": done.credits_spent,
        "create_seconds": round(create_s, 2),
        "run_seconds": round(run_s, 2),
        "lead_features_per_second": round(items / run_s),
        "charging_seconds": round(charging, 2),
        "charging_ms_per_lead_feature": round(charging / items * 1000, 3),
        "charging_ms_per_lead": round(charging / args.leads * 1000, 3),
        "lookup_seconds": round(timings["_lookup_all"], 2),
        "reserve_seconds": round(timings["_reserve"], 2),
        "settle_seconds": round(timings["_settle"], 2),
        "chunk_size": args.chunk_size,
        "concurrency": args.concurrency,
        "audit_clean": audit_clean,
    }
    print(
        f"{items:,} lead-features ({args.leads:,} leads x {len(features)}) in {run_s:.1f} s: "
        f"{result['lead_features_per_second']:,} lead-features/s; charging "
        f"{result['charging_ms_per_lead_feature']} ms per lead-feature "
        f"({result['charging_ms_per_lead']} ms per lead), lookups {timings['_lookup_all']:.1f} s; "
        f"job creation {create_s:.1f} s; audit {'clean' if audit_clean else 'FAILED'}"
    )
    print(json.dumps(result))
    book.engine.dispose()
    return 0 if audit_clean and done.status == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
