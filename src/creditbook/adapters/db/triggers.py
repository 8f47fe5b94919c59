"""Database triggers that keep the ledger honest even against raw SQL.

On both databases the ledger tables are append-only: UPDATE and DELETE are
refused. On PostgreSQL a deferred constraint trigger also checks, at commit,
that the postings of every entry written sum to zero (django-hordak does the
same). SQLite has no deferred triggers; there ``creditbook audit`` finds an
unbalanced entry. Migration 0007 replaces that per-row check with a cheaper
statement-level one (see ``POSTGRES_STATEMENT_CHECK_UP``).
"""

from __future__ import annotations

APPEND_ONLY_TABLES = ("ledger_entries", "ledger_postings")

POSTGRES_UP = [
    """
    CREATE OR REPLACE FUNCTION creditbook_refuse_change() RETURNS trigger AS $$
    BEGIN
      RAISE EXCEPTION 'creditbook ledger is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
    END $$ LANGUAGE plpgsql
    """,
    *[
        f"""
        CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
        FOR EACH ROW EXECUTE FUNCTION creditbook_refuse_change()
        """
        for table in APPEND_ONLY_TABLES
    ],
    """
    CREATE OR REPLACE FUNCTION creditbook_check_entry_balanced() RETURNS trigger AS $$
    DECLARE total bigint;
    BEGIN
      SELECT coalesce(sum(amount), 0) INTO total FROM ledger_postings
       WHERE team_id = NEW.team_id AND entry_id = NEW.entry_id;
      IF total <> 0 THEN
        RAISE EXCEPTION 'ledger entry % does not balance: postings sum to %',
          NEW.entry_id, total
          USING ERRCODE = 'integrity_constraint_violation';
      END IF;
      RETURN NULL;
    END $$ LANGUAGE plpgsql
    """,
    """
    CREATE CONSTRAINT TRIGGER ledger_postings_balanced AFTER INSERT ON ledger_postings
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION creditbook_check_entry_balanced()
    """,
]

POSTGRES_DOWN = [
    "DROP TRIGGER IF EXISTS ledger_postings_balanced ON ledger_postings",
    "DROP FUNCTION IF EXISTS creditbook_check_entry_balanced()",
    *[f"DROP TRIGGER IF EXISTS {t}_append_only ON {t}" for t in APPEND_ONLY_TABLES],
    "DROP FUNCTION IF EXISTS creditbook_refuse_change()",
]

SQLITE_UP = [
    f"""
    CREATE TRIGGER {table}_no_{op.lower()} BEFORE {op} ON {table}
    BEGIN SELECT RAISE(ABORT, 'creditbook ledger is append-only: {op} on {table} refused'); END
    """
    for table in APPEND_ONLY_TABLES
    for op in ("UPDATE", "DELETE")
]

SQLITE_DOWN = [
    f"DROP TRIGGER IF EXISTS {table}_no_{op.lower()}"
    for table in APPEND_ONLY_TABLES
    for op in ("UPDATE", "DELETE")
]


# Migration 0007 (group commit): the deferred per-row check above runs one query per
# posting at commit. The repository writes all postings of an entry in ONE statement
# (``json_to_recordset``), so a statement-level trigger that reads only the rows that
# statement inserted (a transition table) checks the same rule with one query per
# statement. It is stricter, never looser: every statement's postings must balance per
# entry, so the sum over all statements balances too.
POSTGRES_STATEMENT_CHECK_UP = [
    "DROP TRIGGER IF EXISTS ledger_postings_balanced ON ledger_postings",
    """
    CREATE OR REPLACE FUNCTION creditbook_check_statement_balanced() RETURNS trigger AS $$
    DECLARE bad record;
    BEGIN
      SELECT entry_id, sum(amount) AS total INTO bad FROM new_postings
       GROUP BY team_id, entry_id HAVING sum(amount) <> 0 LIMIT 1;
      IF FOUND THEN
        RAISE EXCEPTION 'ledger entry % does not balance: postings sum to %',
          bad.entry_id, bad.total
          USING ERRCODE = 'integrity_constraint_violation';
      END IF;
      RETURN NULL;
    END $$ LANGUAGE plpgsql
    """,
    """
    CREATE TRIGGER ledger_postings_balanced AFTER INSERT ON ledger_postings
    REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION creditbook_check_statement_balanced()
    """,
]

POSTGRES_STATEMENT_CHECK_DOWN = [
    "DROP TRIGGER IF EXISTS ledger_postings_balanced ON ledger_postings",
    "DROP FUNCTION IF EXISTS creditbook_check_statement_balanced()",
    """
    CREATE CONSTRAINT TRIGGER ledger_postings_balanced AFTER INSERT ON ledger_postings
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION creditbook_check_entry_balanced()
    """,
]


def up(dialect: str) -> list[str]:
    return POSTGRES_UP if dialect == "postgresql" else SQLITE_UP


def down(dialect: str) -> list[str]:
    return POSTGRES_DOWN if dialect == "postgresql" else SQLITE_DOWN
