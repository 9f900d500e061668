"""`relay serve`: web app, worker and cron in one command, for development."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from werkzeug.serving import WSGIRequestHandler, run_simple

from relay.config import Config
from relay.redisconn import EmbeddedRedis
from relay.runtime import Runtime

log = logging.getLogger(__name__)

# Where `relay serve` tells other commands which Redis it runs.
REDIS_URL_FILE = "redis.url"


def serve(config: Config, host: str, port: int) -> None:
    """Run until interrupted; stop the worker and the embedded Redis after."""
    embedded = EmbeddedRedis(config.instance_path) if config.redis_url is None else None
    redis_url = embedded.url if embedded else config.redis_url
    assert redis_url is not None
    url_file = config.instance_path / REDIS_URL_FILE
    if embedded:
        url_file.write_text(redis_url + "\n")

    runtime = Runtime.build(config, redis_url=redis_url)
    runtime.db.upgrade()
    env = {**os.environ, "REDIS_URL": redis_url}
    worker = subprocess.Popen([sys.executable, "-m", "relay.cli", "worker"], env=env)
    # Hourly retention, as the Procfile's `clock` process does in production.
    clock = subprocess.Popen([sys.executable, "-m", "relay.cli", "cron"], env=env)
    # A plain `kill` must still stop the worker and save the embedded Redis.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    stopping = threading.Event()
    threading.Thread(target=_watch, args=(worker, stopping), daemon=True).start()

    from webapp import create_app

    try:
        run_simple(
            host,
            port,
            create_app(runtime=runtime),
            threaded=True,
            request_handler=PrivateRequestHandler,
        )
    finally:
        stopping.set()
        _stop([worker, clock], embedded, url_file)


class PrivateRequestHandler(WSGIRequestHandler):
    """The development server's access log without client IPs or query strings.

    A page load from the admin carries Shopify's session token in its query
    string, and a client's IP is personal data; neither belongs in a log.
    """

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = self.path.split("?", 1)[0]
        log.info("%s %s %s", self.command, path, code)


def _watch(worker: subprocess.Popen[bytes], stopping: threading.Event) -> None:
    """Stop serving when the worker dies: webhooks would pile up unprocessed."""
    code = worker.wait()
    if stopping.is_set():
        return  # we stopped it ourselves
    log.error("serve: the worker exited with code %s; stopping", code)
    os.kill(os.getpid(), signal.SIGTERM)


def _stop(
    children: list[subprocess.Popen[bytes]],
    embedded: EmbeddedRedis | None,
    url_file: Path,
) -> None:
    log.info("serve: stopping the worker and the embedded Redis (a few seconds)")
    for child in children:
        if child.poll() is None:
            child.terminate()
    for child in children:
        child.wait(timeout=30)
    if embedded:
        url_file.unlink(missing_ok=True)
        embedded.stop()
    log.info("serve: stopped")
