"""Group commit: check ledger balance once per INSERT statement, not once per posting.

On PostgreSQL the deferred per-row constraint trigger of 0001 ran one query per
posting at commit. It is replaced by a statement-level AFTER INSERT trigger over
a transition table; the repository inserts every posting of an entry in one
statement. The trigger's SQL is written out below (it was read from
``adapters/db/triggers.py``): no later change to creditbook changes what 0007
does. SQLite: nothing changes.

Revision ID: 0007_group_commit
Revises: 0006_dashboard
"""

from __future__ import annotations

from alembic import op

revision = "0007_group_commit"
down_revision = "0006_dashboard"
branch_labels = None
depends_on = None

# 0001's deferred per-row check runs one query per posting at commit. The repository
# writes all postings of an entry in ONE statement (``json_to_recordset``), so a
# statement-level trigger that reads only the rows that statement inserted (a
# transition table) checks the same rule with one query per statement. It is
# stricter, never looser: every statement's postings must balance per entry, so the
# sum over all statements balances too.
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


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in POSTGRES_STATEMENT_CHECK_UP:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in POSTGRES_STATEMENT_CHECK_DOWN:
            op.execute(statement)
