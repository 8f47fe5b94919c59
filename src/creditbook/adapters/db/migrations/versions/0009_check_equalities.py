"""The ledger's closed sets checked with equalities joined by OR, not IN lists.

SQLite runs ``column in ('a', 'b', 'c', ...)`` by filling a temporary table each
time a statement runs, and an ``executemany`` INSERT runs once per row: 2 to 2.5
us for every entry and posting written, about a tenth of a charge in
``charge_many`` (decision 0008). ``column = 'a' or column = 'b' or
...`` means the same (every such column is NOT NULL) and costs nothing there.

* PostgreSQL: each constraint is dropped and added again under its name, in one
  ``ALTER TABLE`` per table; adding it checks the table's existing rows once.
* SQLite cannot alter a CHECK. Each table is rebuilt by SQLite's own procedure
  (https://www.sqlite.org/lang_altertable.html, "other kinds of table schema
  changes"): a new table from the stored ``CREATE TABLE`` text with only the
  CHECK clauses replaced, its rows copied, the old table dropped, the new one
  renamed, then the old table's indexes and triggers (the ledger's append-only
  triggers) created again from their stored text.

The texts are frozen here, not read from ``tables.py``: this migration must do
the same thing whatever later versions declare.

Revision ID: 0009_check_equalities
Revises: 0008_lean_indexes
"""

from __future__ import annotations

from collections.abc import Callable

from alembic import op

revision = "0009_check_equalities"
down_revision = "0008_lean_indexes"
branch_labels = None
depends_on = None

# table -> [(constraint name, column, the closed set)]
CHECKS: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {
    "grants": [
        ("ck_grants_category", "category", ("free", "purchased")),
        (
            "ck_grants_source",
            "source",
            ("trial", "plan", "allowance", "purchase", "gift", "adjustment"),
        ),
        ("ck_grants_bucket", "bucket", ("trial", "subscription", "calling", "gifted", "purchased")),
    ],
    "holds": [("ck_holds_status", "status", ("active", "captured", "released", "expired"))],
    "ledger_entries": [
        (
            "ck_ledger_entries_kind",
            "kind",
            ("grant", "hold", "capture", "release", "charge", "attempt", "expire", "revoke"),
        )
    ],
    "ledger_postings": [
        (
            "ck_ledger_postings_account",
            "account",
            ("issued", "available", "held", "used", "expired", "revoked"),
        )
    ],
}

Form = Callable[[str, tuple[str, ...]], str]


def in_list(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{value}'" for value in values)
    return f"{column} in ({quoted})"


def equalities(column: str, values: tuple[str, ...]) -> str:
    # tables.one_of's text, frozen here: a later change there must not change 0009.
    return " or ".join(f"{column} = '{value}'" for value in values)


def upgrade() -> None:
    _rewrite(in_list, equalities)


def downgrade() -> None:
    _rewrite(equalities, in_list)


def _rewrite(old: Form, new: Form) -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, checks in CHECKS.items():
            clauses = [
                f"DROP CONSTRAINT {name}, ADD CONSTRAINT {name} CHECK ({new(column, values)})"
                for name, column, values in checks
            ]
            op.execute(f"ALTER TABLE {table} {', '.join(clauses)}")
    else:
        for table, checks in CHECKS.items():
            _rebuild_sqlite_table(table, checks, old, new)


def _rebuild_sqlite_table(
    table: str, checks: list[tuple[str, str, tuple[str, ...]]], old: Form, new: Form
) -> None:
    conn = op.get_bind()
    stored = "SELECT sql FROM sqlite_master WHERE tbl_name = ? AND type IN ({}) AND sql IS NOT NULL"
    create = conn.exec_driver_sql(stored.format("'table'"), (table,)).scalar_one()
    dependents = conn.exec_driver_sql(stored.format("'index', 'trigger'"), (table,)).all()
    # SQLite keeps the name as it was written: quoted by SQLAlchemy for some
    # tables, and always quoted after a RENAME.
    for head in (f"CREATE TABLE {table} (", f'CREATE TABLE "{table}" ('):
        if create.startswith(head):
            break
    else:
        raise RuntimeError(f"{table}: unexpected stored definition {create[:60]!r}")
    for name, column, values in checks:
        clause = f"CONSTRAINT {name} CHECK ({old(column, values)})"
        if create.count(clause) != 1:
            raise RuntimeError(f"{table}: the stored definition lacks {clause!r}")
        create = create.replace(clause, f"CONSTRAINT {name} CHECK ({new(column, values)})")
    staging = f"_creditbook_0009_{table}"
    conn.exec_driver_sql(f"CREATE TABLE {staging} (" + create[len(head) :])
    # The same definition: the same columns in the same order.
    conn.exec_driver_sql(f"INSERT INTO {staging} SELECT * FROM {table}")
    conn.exec_driver_sql(f"DROP TABLE {table}")
    conn.exec_driver_sql(f"ALTER TABLE {staging} RENAME TO {table}")
    for (statement,) in dependents:
        conn.exec_driver_sql(statement)
