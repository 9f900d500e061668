"""The running system: configuration, clock, Redis, database, plugins.

Web, worker and CLI each build one `Runtime` when they start. RQ jobs are
plain functions that find it with `current()`: the worker installs it before
working, and forked work horses inherit it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import httpx
import redis
from rq import Queue

from relay.clock import Clock, SystemClock
from relay.config import Config
from relay.database import Database
from relay.errors import ConfigError
from relay.plugins import Plugins
from relay.redisconn import connect
from relay.secrets import KeyRing
from relay.shopify.api import Shopify


@dataclass
class Runtime:
    config: Config
    redis: redis.Redis
    db: Database
    plugins: Plugins
    clock: Clock = field(default_factory=SystemClock)
    # None in production: Shopify over HTTPS. Tests route it to a fake.
    shopify_transport: httpx.BaseTransport | None = None

    @classmethod
    def build(
        cls,
        config: Config,
        *,
        redis_url: str | None = None,
        clock: Clock | None = None,
        plugins: Plugins | None = None,
    ) -> Runtime:
        """Connect to what `config` names; `redis_url` overrides its REDIS_URL."""
        url = redis_url or config.redis_url
        if url is None:
            raise ConfigError(
                "no Redis URL: set REDIS_URL, or start Relay with `relay serve`, "
                "which runs an embedded Redis"
            )
        return cls(
            config=config,
            redis=connect(url),
            db=Database(config.sqlalchemy_url),
            plugins=plugins or Plugins.load(config.plugins_file),
            clock=clock or SystemClock(),
        )

    @cached_property
    def keyring(self) -> KeyRing:
        return KeyRing.from_config(self.config)

    @cached_property
    def shopify(self) -> Shopify:
        return Shopify(self.config, self.shopify_transport)

    @cached_property
    def queue(self) -> Queue:
        return Queue(self.config.queue_name, connection=self.redis)


_current: Runtime | None = None


def install(runtime: Runtime) -> None:
    """Make `runtime` the one jobs in this process use."""
    global _current
    _current = runtime


def current() -> Runtime:
    if _current is None:
        raise ConfigError("no Relay runtime installed in this process")
    return _current
