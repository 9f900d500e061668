"""A destination paused because its platform refused the credentials.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    with op.batch_alter_table("destination_settings") as settings:
        settings.add_column(sa.Column("paused_reason", sa.Text, nullable=True))
        settings.add_column(
            sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("destination_settings") as settings:
        settings.drop_column("paused_at")
        settings.drop_column("paused_reason")
