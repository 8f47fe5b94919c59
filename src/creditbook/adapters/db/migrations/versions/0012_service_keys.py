"""Service keys: ``api_keys.kind``, ``personal`` (the default) or ``service``.

A personal key acts with its member's role. A service key is the platform's
own code (enrichment workers, a dialer): it spends, settles any hold and sees
every enrichment job of its team, and reaches no admin endpoint whatever its
member's role. Existing keys are personal, as they behaved before. On SQLite
the CHECK needs the table rebuilt, which batch mode does.

Revision ID: 0012_service_keys
Revises: 0011_purchase_sweep
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_service_keys"
down_revision = "0011_purchase_sweep"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(16), nullable=False, server_default="personal")
        )
        batch_op.create_check_constraint(
            op.f("ck_api_keys_kind"), sa.text("kind = 'personal' or kind = 'service'")
        )


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch_op:
        batch_op.drop_constraint(op.f("ck_api_keys_kind"), type_="check")
        batch_op.drop_column("kind")
