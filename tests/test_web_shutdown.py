"""The web process on SIGTERM: a webhook being received is still accepted.

Heroku sends SIGTERM and allows 30 s. The Procfile's gunicorn stops taking
connections and lets each worker finish the request it holds (graceful
timeout 25 s); the test sends half a webhook, signals, then the rest.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from relay import keys
from relay.shopify.webhooks import sign
from tests.conftest import ROOT, SECRET, SHOP, fixture_bytes


def procfile_web_command(port: int) -> list[str]:
    line = next(
        line.split(":", 1)[1]
        for line in (ROOT / "Procfile").read_text().splitlines()
        if line.startswith("web:")
    )
    line = line.replace("$PORT", str(port)).replace("${WEB_CONCURRENCY:-2}", "1")
    command = shlex.split(line)
    command[0] = str(Path(sys.executable).parent / command[0])
    return command


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_webhook_in_flight_at_sigterm_is_answered_and_queued(
    cli_env, redis_conn, tmp_path
):
    port = free_port()
    env = {**os.environ, **cli_env, "SHOPIFY_API_SECRET": SECRET}
    log = (tmp_path / "web.log").open("wb")
    web = subprocess.Popen(
        procfile_web_command(port), cwd=ROOT, env=env, stdout=log, stderr=log
    )
    try:
        _wait_for_app(port)
        body = fixture_bytes("orders_create.json")
        head = (
            f"POST /webhooks HTTP/1.1\r\nHost: relay.test\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"X-Shopify-Topic: orders/create\r\nX-Shopify-Shop-Domain: {SHOP}\r\n"
            f"X-Shopify-Webhook-Id: in-flight-1\r\nExpect: 100-continue\r\n"
            f"X-Shopify-Hmac-Sha256: {sign(body, SECRET)}\r\n\r\n"
        ).encode()
        client = socket.create_connection(("127.0.0.1", port), timeout=30)
        client.sendall(head)
        # gunicorn's worker answers 100 Continue once it holds the request.
        assert client.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"

        web.send_signal(signal.SIGTERM)
        client.sendall(body)
        answer = _read_response(client)
        client.close()

        assert answer.startswith("HTTP/1.1 200"), answer
        assert json.loads(answer.split("\r\n\r\n", 1)[1]) == {"status": "queued"}
        assert web.wait(timeout=30) == 0
        assert redis_conn.get(keys.inbox(SHOP, "in-flight-1")) == body
    finally:
        if web.poll() is None:
            web.kill()
            web.wait()
        log.close()


def _wait_for_app(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as probe:
                probe.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
                if re.match(rb"HTTP/1.\d \d{3}", probe.recv(100)):
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("gunicorn never answered")


def _read_response(client: socket.socket) -> str:
    received = b""
    while chunk := client.recv(65536):
        received += chunk
    return received.decode()
