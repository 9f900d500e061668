"""The database: engine, sessions and migrations.

SQLite in the instance folder by default, PostgreSQL through `DATABASE_URL`.
The schema is only ever changed by Alembic (`relay db upgrade`, run by the
`release` process), never by `create_all`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


class Database:
    """An engine and a session factory for one database URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # A forked RQ work horse must not reuse its parent's connections.
        os.register_at_fork(after_in_child=self._forget_parent_connections)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits when the block ends and rolls back on error."""
        with self._sessions() as session, session.begin():
            yield session

    def ping(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def upgrade(self) -> None:
        """Bring the schema to the newest migration."""
        log.info(
            "database %s: applying any pending migrations",
            self.engine.url.render_as_string(),
        )
        with self.engine.begin() as connection:
            alembic = _alembic_config()
            alembic.attributes["connection"] = connection
            command.upgrade(alembic, "head")

    def dispose(self) -> None:
        self.engine.dispose()

    def _forget_parent_connections(self) -> None:
        self.engine.dispose(close=False)


def _engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, hide_parameters=True)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # Statement parameters (customer ids among them) stay out of error logs.
    return create_engine(url, pool_pre_ping=True, hide_parameters=True)


def _sqlite_pragmas(connection: object, _record: object) -> None:
    cursor = connection.cursor()  # type: ignore[attr-defined]
    # WAL lets the web process read while a worker writes; foreign keys make
    # shop deletion cascade as it does on PostgreSQL.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # In WAL mode NORMAL survives a crashed process; only a power cut may lose
    # the last commits, and Redis holds the work to redo them.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _alembic_config() -> AlembicConfig:
    alembic = AlembicConfig()
    alembic.set_main_option("script_location", str(MIGRATIONS))
    return alembic
