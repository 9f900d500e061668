"""Log configuration, done once per process by whatever starts it."""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_configured = False


def configure(level: str = "INFO") -> None:
    """Send Relay's logs to stderr, one line each; later calls do nothing.

    A host that configured logging already (gunicorn with its own config,
    pytest) is left alone.
    """
    global _configured
    if _configured:
        return
    _configured = True
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs each request URL at INFO; Relay logs its own calls with less.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # Alembic announces each of its internal plugins at INFO on every start.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
