"""Shops, destination settings, events and the delivery log.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None

UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "shops",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("domain", sa.String(255), nullable=False, unique=True),
        sa.Column("installed", sa.Boolean, nullable=False),
        sa.Column("uninstalled_at", UTC, nullable=True),
        sa.Column("created_at", UTC, nullable=False),
    )
    op.create_table(
        "destination_settings",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "shop_id",
            sa.Integer,
            sa.ForeignKey("shops.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("destination", sa.String(64), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("test_mode", sa.Boolean, nullable=False),
        sa.Column("values", sa.JSON, nullable=False),
        sa.Column("encrypted_secrets", sa.Text, nullable=True),
        sa.Column("updated_at", UTC, nullable=False),
        sa.UniqueConstraint("shop_id", "destination"),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "shop_id",
            sa.Integer,
            sa.ForeignKey("shops.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=True),
        sa.Column("customer_id", sa.String(64), nullable=True),
        sa.Column("origin", sa.String(64), nullable=False),
        sa.Column("test", sa.Boolean, nullable=False),
        sa.Column("occurred_at", UTC, nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.UniqueConstraint("shop_id", "name", "event_id"),
    )
    op.create_index("ix_events_shop_order", "events", ["shop_id", "order_id"])
    op.create_index("ix_events_shop_customer", "events", ["shop_id", "customer_id"])
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "event_pk",
            sa.Integer,
            sa.ForeignKey("events.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "shop_id",
            sa.Integer,
            sa.ForeignKey("shops.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("destination", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(255), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("http_status", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("warning", sa.Text, nullable=True),
        sa.Column("test_mode", sa.Boolean, nullable=False),
        sa.Column("match_keys", sa.JSON, nullable=False),
        sa.Column("payload", sa.JSON, nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.UniqueConstraint("event_pk", "destination"),
    )
    op.create_index(
        "ix_deliveries_shop_created", "deliveries", ["shop_id", "created_at"]
    )


def downgrade() -> None:
    op.drop_table("deliveries")
    op.drop_table("events")
    op.drop_table("destination_settings")
    op.drop_table("shops")
