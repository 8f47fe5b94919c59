"""``creditbook db check``: the live schema compared with the one the code expects.

What the code expects is the schema that its migrations build on an empty
database of the same kind (decision 0014): on SQLite a database in memory, on
PostgreSQL a scratch schema created in a transaction that is rolled back, so
nothing is left behind and no live table is locked.

A ``Schema`` is a flat description of every object, read from the database's
own catalog (``sqlite_master`` and its PRAGMAs; ``pg_catalog``): tables and
their options (``fillfactor``, ``WITHOUT ROWID``...), columns (type,
nullability, default, order), primary keys, unique, CHECK and foreign-key
constraints, indexes (with their predicates), triggers, functions and views.
Definitions are compared as the database prints them, whitespace squeezed and
the schema's name left out, so two databases built by the same statements
compare equal and any change of meaning shows as a difference. One exception:
PostgreSQL prints a CHECK with an IN list one way as created and another way
once a dump of it is restored; such a pair is parsed by the server again and
counts as equal when it then prints the same (``differences``).
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import DBAPIError

from creditbook.adapters.db import migrate
from creditbook.adapters.db.schema_errors import ScratchSchemaRefused

# (table, kind, name): "" as the table of objects outside tables (functions).
Key = tuple[str, str, str]

# The bookkeeping of Alembic, compared as the revision, not as a table.
VERSION_TABLE = "alembic_version"


@dataclass(frozen=True)
class Schema:
    """Every object of a database's schema, by (table, kind, name), with its definition."""

    dialect: str
    revision: str | None
    objects: dict[Key, str] = field(default_factory=dict)

    def counts(self) -> Counter[str]:
        return Counter(kind for _table, kind, _name in self.objects)

    def summary(self) -> str:
        counts = self.counts()
        shown = ("table", "column", "check", "index", "trigger", "function")
        return ", ".join(_count(counts[kind], kind) for kind in shown)


def _count(n: int, kind: str) -> str:
    plural = {"index": "indexes", "primary key": "primary keys"}.get(kind, kind + "s")
    return f"{n} {kind if n == 1 else plural}"


@dataclass(frozen=True)
class Difference:
    """One object that is missing, unexpected, or defined otherwise than expected."""

    table: str
    kind: str
    name: str
    expected: str | None
    actual: str | None

    def __str__(self) -> str:
        where = f"{self.table}: " if self.table else ""
        what = f"{self.kind} {self.name}" if self.name else self.kind
        if self.actual is None:
            return f"{where}missing {what} (expected: {self.expected})"
        if self.expected is None:
            return f"{where}unexpected {what} ({self.actual})"
        return f"{where}{what} is {self.actual}; expected {self.expected}"


def compare(expected: Schema, actual: Schema) -> list[Difference]:
    """Every difference between two schemas, the revision first, then by table."""
    found = []
    if expected.revision != actual.revision:
        found.append(
            Difference("", "revision", "", expected.revision or "none", actual.revision or "none")
        )
    # A table missing (or unexpected) as a whole is one difference, not one per column.
    whole = {
        table
        for table, kind, _name in expected.objects.keys() ^ actual.objects.keys()
        if kind == "table"
    }
    for key in sorted(expected.objects.keys() | actual.objects.keys()):
        want, have = expected.objects.get(key), actual.objects.get(key)
        table, kind, _name = key
        if want == have or (table in whole and kind != "table"):
            continue
        if table in whole:
            side = expected if want is not None else actual
            parts = Counter(
                k for t, k, _n in side.objects if t == table and k not in ("table", "column order")
            )
            described = ", ".join(_count(n, k) for k, n in sorted(parts.items()))
            want = want and described
            have = have and described
        found.append(Difference(*key, want, have))
    return found


def check(engine: Engine, revision: str = "head") -> tuple[Schema, list[Difference]]:
    """The live schema of ``engine`` and its differences from what ``revision`` builds."""
    expected = expected_schema(engine, revision)
    with engine.connect() as conn:
        actual = snapshot(conn)
        return actual, differences(conn, expected, actual)


def differences(conn: Connection, expected: Schema, actual: Schema) -> list[Difference]:
    """``compare``, less the CHECKs that PostgreSQL prints two ways for one meaning.

    A CHECK written ``x in ('a', 'b')`` prints as ``x = ANY ((ARRAY[...])::text[])``;
    ``pg_dump`` writes that text and, parsed again, it prints as
    ``x = ANY (ARRAY[(...)::text, ...])``. Both texts are handed to the server on a
    scratch copy of the table (rolled back): equal when it prints them the same.
    """
    found = compare(expected, actual)
    if conn.dialect.name != "postgresql":
        return found
    return [d for d in found if not _printed_two_ways(conn, d)]


def _printed_two_ways(conn: Connection, difference: Difference) -> bool:
    if difference.kind != "check" or difference.expected is None or difference.actual is None:
        return False
    savepoint = conn.begin_nested() if conn.in_transaction() else conn.begin()
    try:
        conn.exec_driver_sql(f'CREATE TEMP TABLE creditbook_reparse (LIKE "{difference.table}")')
        printed = []
        for n, definition in enumerate((difference.expected, difference.actual)):
            conn.exec_driver_sql(
                f"ALTER TABLE creditbook_reparse ADD CONSTRAINT reparse_{n} {definition}"
            )
            printed.append(
                conn.exec_driver_sql(
                    "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                    f"WHERE conname = 'reparse_{n}' AND conrelid = 'creditbook_reparse'::regclass"
                ).scalar_one()
            )
        return bool(printed[0] == printed[1])
    except DBAPIError:
        return False
    finally:
        savepoint.rollback()


def expected_schema(engine: Engine, revision: str = "head") -> Schema:
    """What the migrations up to ``revision`` build on an empty database of ``engine``'s kind."""
    with engine.connect() as conn:
        version = conn.dialect.server_version_info
    return _expected(engine, migrate.head_revision() if revision == "head" else revision, version)


# The migrations are frozen: one process builds each revision's schema once per server
# version, all revisions in one pass (a snapshot after each step costs little).
_built: dict[tuple[str, str, object], Schema] = {}


def _expected(engine: Engine, revision: str, version: object) -> Schema:
    key = (engine.dialect.name, revision, version)
    if key not in _built:
        for built, schema in _build_all(engine).items():
            _built[(engine.dialect.name, built, version)] = schema
    return _built[key]


def _build_all(engine: Engine) -> dict[str, Schema]:
    """The schema of every revision (and ``base``), from one scratch database."""
    if engine.dialect.name != "postgresql":
        from creditbook.adapters.db.engine import make_engine

        scratch = make_engine("sqlite://")
        try:
            with scratch.begin() as conn:
                return _step_through(conn)
        finally:
            scratch.dispose()
    # A schema of its own, on a connection of its own, in a transaction rolled back:
    # the live schema is neither read nor locked, and nothing stays behind.
    name = f"creditbook_expected_{uuid.uuid4().hex[:12]}"
    with engine.connect() as conn:
        tx = conn.begin()
        try:
            try:
                conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
            except DBAPIError as exc:
                if getattr(exc.orig, "sqlstate", None) != "42501":
                    raise
                raise ScratchSchemaRefused(
                    "the expected schema is built in a scratch schema (rolled back at once), "
                    "and this role may not create one: run the command as the database's "
                    "owner, or GRANT CREATE ON DATABASE to this role",
                ) from None
            conn.exec_driver_sql(f'SET LOCAL search_path TO "{name}"')
            return _step_through(conn)
        finally:
            tx.rollback()


def _step_through(conn: Connection) -> dict[str, Schema]:
    found = {"base": snapshot(conn)}
    for revision in migrate.known_revisions():
        migrate.upgrade_on(conn, revision)
        found[revision] = snapshot(conn)
    return found


def snapshot(conn: Connection) -> Schema:
    """The schema ``conn`` sees: SQLite's main database, or PostgreSQL's current schema."""
    if conn.dialect.name == "postgresql":
        return _postgres(conn)
    return _sqlite(conn)


def _revision(conn: Connection, tables: set[str]) -> str | None:
    if VERSION_TABLE not in tables:
        return None
    rows = conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").scalars().all()
    return ", ".join(sorted(rows)) or None


def _squash(definition: str) -> str:
    return " ".join(definition.split())


# ---- SQLite ------------------------------------------------------------------------


def _sqlite(conn: Connection) -> Schema:
    master = conn.exec_driver_sql(
        "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
    ).all()
    tables = {name for kind, name, _t, _s in master if kind == "table"}
    objects: dict[Key, str] = {}
    options = {
        row[1]: row for row in conn.exec_driver_sql("PRAGMA table_list").all() if row[0] == "main"
    }
    inspector = inspect(conn)
    for table in sorted(tables - {VERSION_TABLE}):
        flags = [flag for flag, on in (("WITHOUT ROWID", options[table][4]),) if on]
        if options[table][5]:
            flags.append("STRICT")
        objects[(table, "table", table)] = " ".join(flags) or "rowid table"
        columns = conn.exec_driver_sql(f'PRAGMA table_xinfo("{table}")').all()
        for _cid, name, type_, notnull, default, _pk, hidden in columns:
            objects[(table, "column", name)] = _column(
                type_.upper(), bool(notnull), default, hidden != 0
            )
        objects[(table, "column order", "")] = ", ".join(c[1] for c in columns)
        keyed = sorted((c[5], c[1]) for c in columns if c[5])
        if keyed:
            pk = inspector.get_pk_constraint(table)
            name = pk.get("name") or ""
            objects[(table, "primary key", name)] = f"({', '.join(c for _n, c in keyed)})"
        for unique in inspector.get_unique_constraints(table):
            columns_ = ", ".join(unique["column_names"])
            objects[(table, "unique", unique["name"] or f"({columns_})")] = f"({columns_})"
        for check_ in inspector.get_check_constraints(table):
            sqltext = _squash(str(check_["sqltext"]))
            objects[(table, "check", check_["name"] or sqltext)] = sqltext
        for fk in conn.exec_driver_sql(f'PRAGMA foreign_key_list("{table}")').all():
            objects[(table, "foreign key", f"{fk[0]}:{fk[3]}")] = (
                f"{fk[3]} -> {fk[2]}({fk[4]}) on update {fk[5]} on delete {fk[6]}"
            )
    for kind, name, table, sql in master:
        if kind in ("index", "trigger") and sql and table != VERSION_TABLE:
            objects[(table, kind, name)] = _squash(sql.replace('"', ""))
        elif kind == "view":
            objects[(name, "view", name)] = _squash(sql)
    return Schema("sqlite", _revision(conn, tables), objects)


def _column(type_: str, not_null: bool, default: str | None, generated: bool) -> str:
    described = type_ + (" NOT NULL" if not_null else " NULL")
    if default is not None:
        described += f" DEFAULT {default}"
    return described + (" GENERATED" if generated else "")


# ---- PostgreSQL ----------------------------------------------------------------------


def _postgres(conn: Connection) -> Schema:
    schema = conn.exec_driver_sql("SELECT current_schema()").scalar_one()
    params = {"schema": schema}

    def rows(sql: str) -> list[tuple[object, ...]]:
        return [tuple(row) for row in conn.execute(text(sql), params).all()]

    def unqualified(definition: str) -> str:
        # The schema's name (printed before names it does not find on the search path)
        # is left out, so a scratch schema and the live one compare equal.
        squeezed = _squash(definition)
        return re.sub(rf'(?<![\w"])("{re.escape(schema)}"|{re.escape(schema)})\.', "", squeezed)

    objects: dict[Key, str] = {}
    relations = rows(
        """
        SELECT c.relname, c.relkind, c.relpersistence, c.reloptions
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = :schema AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
        """
    )
    tables = {str(r[0]) for r in relations if r[1] in ("r", "p")}
    kinds = {"v": "view", "m": "materialized view", "S": "sequence"}
    for name, relkind, persistence, reloptions in relations:
        name = str(name)
        if name == VERSION_TABLE:
            continue
        if relkind in kinds:
            objects[(name, kinds[str(relkind)], name)] = str(relkind)
            continue
        described = {"p": "permanent", "u": "unlogged", "t": "temporary"}[str(persistence)]
        if relkind == "p":
            described += ", partitioned"
        objects[(name, "table", name)] = described
        for option in reloptions or []:  # type: ignore[attr-defined]
            key, _, value = str(option).partition("=")
            objects[(name, "option", key)] = value
    columns = rows(
        """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated,
               CASE WHEN a.attcollation <> t.typcollation THEN co.collname END
          FROM pg_attribute a
          JOIN pg_class c ON c.oid = a.attrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
          JOIN pg_type t ON t.oid = a.atttypid
          LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
          LEFT JOIN pg_collation co ON co.oid = a.attcollation
         WHERE n.nspname = :schema AND c.relkind IN ('r', 'p') AND a.attnum > 0
           AND NOT a.attisdropped
         ORDER BY c.relname, a.attnum
        """
    )
    order: dict[str, list[str]] = {}
    for table, name, type_, not_null, default, identity, generated, collation in columns:
        table, name = str(table), str(name)
        if table == VERSION_TABLE:
            continue
        described = _column(str(type_).upper(), bool(not_null), None, False)
        if default is not None:
            described += f" DEFAULT {unqualified(str(default))}"
        if identity:
            described += f" IDENTITY {identity}"
        if generated:
            described += " GENERATED"
        if collation:
            described += f" COLLATE {collation}"
        objects[(table, "column", name)] = described
        order.setdefault(table, []).append(name)
    for table, names in order.items():
        objects[(table, "column order", "")] = ", ".join(names)
    constraint_kinds = {
        "p": "primary key",
        "u": "unique",
        "c": "check",
        "f": "foreign key",
        "x": "exclusion",
    }
    for table, name, contype, definition in rows(
        """
        SELECT c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid)
          FROM pg_constraint k
          JOIN pg_class c ON c.oid = k.conrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = :schema
        """
    ):
        if str(table) == VERSION_TABLE:
            continue
        kind = constraint_kinds.get(str(contype), f"constraint {contype}")
        objects[(str(table), kind, str(name))] = unqualified(str(definition))
    for table, name, definition in rows(
        """
        SELECT t.relname, i.relname, pg_get_indexdef(x.indexrelid)
          FROM pg_index x
          JOIN pg_class i ON i.oid = x.indexrelid
          JOIN pg_class t ON t.oid = x.indrelid
          JOIN pg_namespace n ON n.oid = t.relnamespace
         WHERE n.nspname = :schema
           AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid)
        """
    ):
        if str(table) != VERSION_TABLE:
            objects[(str(table), "index", str(name))] = unqualified(str(definition))
    for table, name, definition, enabled in rows(
        """
        SELECT c.relname, g.tgname, pg_get_triggerdef(g.oid), g.tgenabled
          FROM pg_trigger g
          JOIN pg_class c ON c.oid = g.tgrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = :schema AND NOT g.tgisinternal
        """
    ):
        state = "" if enabled == "O" else f" (enabled: {enabled})"
        objects[(str(table), "trigger", str(name))] = unqualified(str(definition)) + state
    for name, arguments, definition in rows(
        """
        SELECT p.proname, pg_get_function_identity_arguments(p.oid), pg_get_functiondef(p.oid)
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = :schema AND p.prokind IN ('f', 'p')
           AND NOT EXISTS (
               SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
        """
    ):
        objects[("", "function", f"{name}({arguments})")] = unqualified(str(definition))
    return Schema("postgresql", _revision(conn, tables), objects)
