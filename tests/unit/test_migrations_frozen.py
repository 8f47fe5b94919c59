"""A landed migration never changes: CI fails on an edit, and a change goes in a new migration.

A database keeps the revision it was migrated to, not the code that did it:
a migration edited after it landed leaves the databases that ran its first
version different from those that run the new one, and nothing tells their
operators (0004-0006 were once committed empty and filled in later; 0008 once
set ``fillfactor = 80``). So each file's SHA-256 is held here. A new migration
adds its line in the same change that adds the file; after that line has
landed on main, it is never edited again (``creditbook db repair`` and a
repair migration handle what past edits left behind).

A migration is also self-contained: it imports nothing from ``creditbook``,
whose later versions would otherwise change what an old migration does. The
one thing Alembic takes from outside a migration, the naming convention of
unnamed constraints, is written out in ``env.py`` and held here too.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

from creditbook.adapters.db import migrate, tables

VERSIONS = migrate.MIGRATIONS / "versions"

LANDED = {
    "0001_ledger_core.py": "a4f583f2cbc51cb24616f65b25b8ffefef694a8ea29dd7d21183702e5b08f217",
    "0002_subscriptions.py": "0821ec99aa136e6eacd7e6edb018652ce0940abd2c0517f8e7e2854040330665",
    "0003_access.py": "2ddf9c7f1ac08f6b24601e084bd53ae2408235c0bbf6931d3fddbe7748c16688",
    "0004_purchases.py": "09dc358c72b912cd41d41ee2900bd9025ada4dda1c6583801bcd011d8bb61757",
    "0005_enrichment.py": "75e635862fdbc5b43ba2b2a1b3c191944209f99a86d4b758cdca6d9d092abe57",
    "0006_dashboard.py": "f43988897c2eb19fa5f9d02512d0462e58481798dba35b41d52c4c0680df4b9d",
    "0007_group_commit.py": "d4b10e3d9e188cc69a717b9c7fffe3d9c668fa5a492de916f8b2f6126bb3de1c",
    "0008_lean_indexes.py": "0a72491221dbd46445687c4a45f4f7ca03ecdb3dd4b09b76953d33b4f13872a7",
    "0009_check_equalities.py": "bfdf19621991e9faed873a055a96f437552b44ec28f7c359a8b4e77779c93b99",
    "0010_key_caps.py": "8b058d93366b655d6334458c4bd637f6384ccc332a0d601e259901b48fd2f46f",
    "0011_purchase_sweep.py": "df017e5bc6f6097efe28e75e6316472042e268b7b8374868eaa428858e58ce84",
    "0012_service_keys.py": "ef223ffe726205f656b3a96f2753d9d934860a0bd9bb1d52d559dae1aeb6d849",
    "0013_dashboard_sessions.py": "029cb0e71b98365f9b03df8bec5a08d537db26c22b5c819def4a77aaa16f54aa",  # noqa: E501
    "0014_repair_history.py": "92ca88b9f094d25e1191a4878f567857fda293657744662ea89a4efd01587bcc",
}

# env.py's MIGRATIONS_NAMING, as every landed migration was run with it.
FROZEN_NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "pk": "pk_%(table_name)s",
}


def _migrations() -> list[Path]:
    return sorted(VERSIONS.glob("*.py"))


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_no_landed_migration_has_changed_by_a_single_byte() -> None:
    changed = {
        path.name: digest
        for path in _migrations()
        if path.name in LANDED
        and (digest := hashlib.sha256(path.read_bytes()).hexdigest()) != LANDED[path.name]
    }
    assert changed == {}, (
        "a landed migration was edited; put the change in a new migration instead "
        f"(databases that ran the old text keep what it did): {sorted(changed)}"
    )


def test_every_migration_is_listed_and_every_listed_one_exists() -> None:
    names = {path.name for path in _migrations()}
    assert names - LANDED.keys() == set(), "a new migration adds its SHA-256 to LANDED"
    assert LANDED.keys() - names == set(), "a landed migration was removed or renamed"


def test_the_listed_migrations_are_the_revisions_alembic_runs_in_order() -> None:
    assert [name.removesuffix(".py") for name in LANDED] == migrate.known_revisions()


def test_no_migration_imports_creditbook() -> None:
    offenders = {
        path.name: sorted(n for n in _imports(path) if n.split(".")[0] == "creditbook")
        for path in [*_migrations(), migrate.MIGRATIONS / "env.py"]
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_migrations_name_constraints_as_the_tables_do() -> None:
    tree = ast.parse((migrate.MIGRATIONS / "env.py").read_text())
    naming = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "MIGRATIONS_NAMING" for t in node.targets)
    )
    assert naming == FROZEN_NAMING
    # A change of the tables' convention needs a migration that renames the constraints.
    assert tables.NAMING == FROZEN_NAMING
