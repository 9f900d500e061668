"""Alembic environment: runs on the connection `relay.database` hands it."""

from alembic import context

from relay.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata)

with context.begin_transaction():
    context.run_migrations()
