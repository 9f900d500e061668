"""Access tokens, pixel ids, privacy requests and reports, contact digests.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"

UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("shops") as shops:
        shops.add_column(sa.Column("installed_at", UTC, nullable=True))
        shops.add_column(sa.Column("web_pixel_id", sa.String(255), nullable=True))
    with op.batch_alter_table("events") as events:
        events.add_column(sa.Column("email_digest", sa.String(64), nullable=True))
        events.add_column(sa.Column("phone_digest", sa.String(64), nullable=True))
    op.create_index("ix_events_shop_email", "events", ["shop_id", "email_digest"])
    op.create_index("ix_events_shop_phone", "events", ["shop_id", "phone_digest"])

    op.create_table(
        "shop_tokens",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "shop_id",
            sa.Integer,
            sa.ForeignKey("shops.id", ondelete="CASCADE"),
            nullable=False,
            unique=True,
        ),
        sa.Column("encrypted_token", sa.Text, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("expires_at", UTC, nullable=True),
        sa.Column("refresh_expires_at", UTC, nullable=True),
        sa.Column("updated_at", UTC, nullable=False),
    )
    op.create_table(
        "privacy_requests",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("shop_domain", sa.String(255), nullable=False),
        sa.Column("topic", sa.String(64), nullable=False),
        sa.Column("webhook_id", sa.String(255), nullable=False),
        sa.Column("received_at", UTC, nullable=False),
        sa.Column("completed_at", UTC, nullable=False),
        sa.Column("outcome", sa.JSON, nullable=False),
        sa.Column("report_id", sa.Integer, nullable=True),
    )
    op.create_index("ix_privacy_requests_shop", "privacy_requests", ["shop_domain"])
    op.create_table(
        "privacy_reports",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "shop_id",
            sa.Integer,
            sa.ForeignKey("shops.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("data_request_id", sa.String(64), nullable=True),
        sa.Column("encrypted_content", sa.Text, nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("expires_at", UTC, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("privacy_reports")
    op.drop_index("ix_privacy_requests_shop", "privacy_requests")
    op.drop_table("privacy_requests")
    op.drop_table("shop_tokens")
    op.drop_index("ix_events_shop_phone", "events")
    op.drop_index("ix_events_shop_email", "events")
    with op.batch_alter_table("events") as events:
        events.drop_column("phone_digest")
        events.drop_column("email_digest")
    with op.batch_alter_table("shops") as shops:
        shops.drop_column("web_pixel_id")
        shops.drop_column("installed_at")
