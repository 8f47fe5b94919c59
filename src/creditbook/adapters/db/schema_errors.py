"""The errors of the database's schema and its upgrades, under ``CreditbookError``.

    CreditbookError
    ├── SchemaNotCurrent         schema_not_current       503  exit 10
    │   └── SchemaNeedsRepair    schema_needs_repair      503  exit 10
    ├── SchemaDrift              schema_drift             500  exit 11
    ├── MigrationLockTimeout     migration_lock_timeout   503  exit 12
    ├── BackupFailed             backup_failed            500  exit 13
    └── ScratchSchemaRefused     scratch_schema_refused   403  exit 14

Each message says what to run next. Nothing is left half-done when one is
raised: a migration runs in one transaction, rolled back whole.
"""

from __future__ import annotations

from creditbook.domain.errors import CreditbookError


class SchemaNotCurrent(CreditbookError):
    """The database is behind the code's migrations (or empty), or ahead of them."""

    code = "schema_not_current"
    status = 503
    exit_code = 10
    title = "Database schema is not the one this version needs"


class SchemaNeedsRepair(SchemaNotCurrent):
    """The database is stamped at a revision whose tables it lacks (an early empty migration)."""

    code = "schema_needs_repair"


class SchemaDrift(CreditbookError):
    """``creditbook db check`` found differences from the schema the code expects."""

    code = "schema_drift"
    status = 500
    exit_code = 11
    title = "Database schema differs from the expected one"


class MigrationLockTimeout(CreditbookError):
    """A migration waited past its lock timeout for a lock another session holds."""

    code = "migration_lock_timeout"
    status = 503
    exit_code = 12
    title = "Migration gave up waiting for a lock"


class BackupFailed(CreditbookError):
    """A backup or a restore could not be made; the database is as it was."""

    code = "backup_failed"
    status = 500
    exit_code = 13
    title = "Backup or restore failed"


class ScratchSchemaRefused(CreditbookError):
    """PostgreSQL refused the scratch schema the expected schema is built in (a role
    without CREATE on the database)."""

    code = "scratch_schema_refused"
    status = 403
    exit_code = 14
    title = "No right to build the expected schema"
