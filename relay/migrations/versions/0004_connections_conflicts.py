"""Destination OAuth connections, conflict checks, the conflict policy.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"

UTC = sa.DateTime(timezone=True)


def _shop_id() -> sa.Column:
    return sa.Column(
        "shop_id",
        sa.Integer,
        sa.ForeignKey("shops.id", ondelete="CASCADE"),
        nullable=False,
    )


def upgrade() -> None:
    with op.batch_alter_table("destination_settings") as settings:
        settings.add_column(
            sa.Column(
                "conflict_policy", sa.String(16), nullable=False, server_default="send"
            )
        )
    op.create_table(
        "destination_connections",
        sa.Column("id", sa.Integer, primary_key=True),
        _shop_id(),
        sa.Column("destination", sa.String(64), nullable=False),
        sa.Column("encrypted_grant", sa.Text, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("expires_at", UTC, nullable=True),
        sa.Column("refresh_expires_at", UTC, nullable=True),
        sa.Column("connected_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.UniqueConstraint("shop_id", "destination"),
    )
    op.create_table(
        "conflict_checks",
        sa.Column("id", sa.Integer, primary_key=True),
        _shop_id(),
        sa.Column("destination", sa.String(64), nullable=False),
        sa.Column("checked_at", UTC, nullable=False),
        sa.Column("findings", sa.JSON, nullable=False),
        sa.Column("acknowledged", sa.JSON, nullable=False),
        sa.UniqueConstraint("shop_id", "destination"),
    )


def downgrade() -> None:
    op.drop_table("conflict_checks")
    op.drop_table("destination_connections")
    with op.batch_alter_table("destination_settings") as settings:
        settings.drop_column("conflict_policy")
