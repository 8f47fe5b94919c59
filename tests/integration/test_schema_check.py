"""``creditbook db check`` finds every kind of difference from the schema the migrations build."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from upgrade_data import DbCli

from creditbook.adapters.db import migrate, schema_check
from creditbook.adapters.db.engine import make_engine

HEAD = "0014_repair_history"


def test_a_freshly_migrated_database_is_identical_to_the_head_schema(empty_url: str) -> None:
    engine = make_engine(empty_url)
    migrate.upgrade(engine)

    actual, differences = schema_check.check(engine)

    assert differences == []
    assert actual.revision == HEAD
    counts = actual.counts()
    assert counts["table"] == 21 and counts["check"] > 50 and counts["trigger"] >= 3
    engine.dispose()


# Each change made around the migrations, and the line the check must print for it.
SQLITE_CHANGES = {
    "DROP INDEX ix_holds_active_expiry": "holds: missing index ix_holds_active_expiry",
    "CREATE INDEX ix_grants_live ON grants (team_id, remaining)": (
        "grants: unexpected index ix_grants_live"
    ),
    "ALTER TABLE teams ADD COLUMN color VARCHAR(8)": "teams: unexpected column color",
    "DROP TRIGGER ledger_postings_no_delete": (
        "ledger_postings: missing trigger ledger_postings_no_delete"
    ),
    "CREATE TABLE scratch (id INTEGER)": "scratch: unexpected table scratch",
}
POSTGRES_CHANGES = {
    **SQLITE_CHANGES,
    "DROP TRIGGER ledger_postings_append_only ON ledger_postings": (
        "ledger_postings: missing trigger ledger_postings_append_only"
    ),
    "ALTER TABLE grants SET (fillfactor = 80)": "grants: unexpected option fillfactor (80)",
    "ALTER TABLE members ALTER COLUMN email DROP NOT NULL": (
        "members: column email is CHARACTER VARYING(320) NULL; "
        "expected CHARACTER VARYING(320) NOT NULL"
    ),
    "ALTER TABLE teams ALTER COLUMN time_zone SET DEFAULT 'Europe/Paris'": (
        "teams: column time_zone is CHARACTER VARYING(64) NOT NULL DEFAULT "
        "'Europe/Paris'::character varying"
    ),
    "ALTER TABLE grants DROP CONSTRAINT ck_grants_bucket, ADD CONSTRAINT ck_grants_bucket "
    "CHECK (bucket <> 'x')": (
        "grants: check ck_grants_bucket is CHECK (((bucket)::text <> 'x'::text))"
    ),
    "ALTER TABLE api_keys ALTER COLUMN label TYPE TEXT": "api_keys: column label is TEXT NULL",
    "CREATE OR REPLACE FUNCTION creditbook_refuse_change() RETURNS trigger AS $$ "
    "BEGIN RETURN NEW; END $$ LANGUAGE plpgsql": "function creditbook_refuse_change() is",
}
POSTGRES_CHANGES.pop("DROP TRIGGER ledger_postings_no_delete")


def test_every_change_made_around_the_migrations_is_listed(empty_url: str) -> None:
    engine = make_engine(empty_url)
    migrate.upgrade(engine)
    changes = POSTGRES_CHANGES if engine.dialect.name == "postgresql" else SQLITE_CHANGES
    with engine.begin() as conn:
        for statement in changes:
            conn.exec_driver_sql(statement)

    _, differences = schema_check.check(engine)

    listed = [str(d) for d in differences]
    for statement, line in changes.items():
        assert any(found.startswith(line) for found in listed), (statement, listed)
    # Nothing else: one line per change, and the new column also moves teams' column order.
    expected = [*changes.values(), "teams: column order is id, name,"]
    assert [f for f in listed if not any(f.startswith(line) for line in expected)] == []
    assert len(listed) == len(expected)
    engine.dispose()


def test_db_check_prints_each_difference_and_exits_non_zero(
    db_cli: DbCli, empty_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(empty_url)
    migrate.upgrade(engine, "0012_service_keys")
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_purchases_status_updated"))
    engine.dispose()
    monkeypatch.setenv("CREDITBOOK_DATABASE_URL", empty_url)

    code, out, err = db_cli("db", "check", "--revision", "0012_service_keys")
    assert code == 11
    assert "purchases: missing index ix_purchases_status_updated" in out
    assert "1 difference(s) from the schema of 0012_service_keys" in err

    code, out, err = db_cli("db", "check")
    assert code == 11
    assert f"revision is 0012_service_keys; expected {HEAD}" in out
    assert "dashboard_sessions: missing table dashboard_sessions" in out
    assert "run `creditbook db upgrade`" in err

    code, _, err = db_cli("db", "check", "--revision", "0099_later")
    assert code == 2 and "unknown revision '0099_later'" in err


@pytest.mark.postgres
def test_a_role_that_may_not_create_a_schema_is_told_what_the_check_needs(
    fresh_pg_url: str,
) -> None:
    import uuid

    from sqlalchemy.engine import make_url

    from creditbook.adapters.db.schema_errors import ScratchSchemaRefused

    owner = make_engine(fresh_pg_url)
    migrate.upgrade(owner)
    role = f"cb_reader_{uuid.uuid4().hex[:8]}"
    database = make_url(fresh_pg_url).database
    with owner.begin() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN"))
        conn.execute(text(f'REVOKE CREATE ON DATABASE "{database}" FROM PUBLIC'))
        conn.execute(text(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"))
    reader = make_engine(make_url(fresh_pg_url).set(username=role).render_as_string(False))
    try:
        with pytest.raises(ScratchSchemaRefused, match="GRANT CREATE ON DATABASE"):
            schema_check._build_all(reader)
    finally:
        reader.dispose()
        with owner.begin() as conn:
            conn.execute(text(f"DROP OWNED BY {role}"))
            conn.execute(text(f"DROP ROLE {role}"))
        owner.dispose()
