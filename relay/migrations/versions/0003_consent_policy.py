"""Each shop's consent policy (relay.consent); the pixel visitor of an event.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    with op.batch_alter_table("shops") as shops:
        shops.add_column(
            sa.Column(
                "consent_policy",
                sa.String(16),
                nullable=False,
                server_default="standard",
            )
        )
    with op.batch_alter_table("events") as events:
        events.add_column(sa.Column("client_id", sa.String(128), nullable=True))
    op.create_index("ix_events_shop_client", "events", ["shop_id", "client_id"])


def downgrade() -> None:
    op.drop_index("ix_events_shop_client", "events")
    with op.batch_alter_table("events") as events:
        events.drop_column("client_id")
    with op.batch_alter_table("shops") as shops:
        shops.drop_column("consent_policy")
