"""A one-request HTTP listener on localhost, for OAuth from a terminal.

`relay destinations connect` sends the merchant to the platform with a
redirect to http://localhost:PORT/callback; this waits for that one request
and hands back its query parameters.
"""

from __future__ import annotations

import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlsplit

import click

ANSWER = (
    b"<!doctype html><title>Relay</title>"
    b"<p>Relay received the answer. You can close this tab.</p>"
)


def wait_for_callback(port: int, seconds: int, state: str) -> dict[str, str]:
    """The query parameters of the first request to /callback carrying
    `state`, the one Relay issued; any other request is turned away."""
    received: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        timeout = 2  # an idle connection does not hold the listener

        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items() if v}
            if url.path != "/callback" or query.get("state") != state:
                self.send_error(404)
                return
            received.update(query)
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write(ANSWER)

        def log_message(self, format: str, *args: object) -> None:
            pass  # the query holds a code: not for the terminal's scrollback

    deadline = time.monotonic() + seconds
    with HTTPServer(("127.0.0.1", port), Handler) as server:
        # A request for another path (a favicon) does not end the wait.
        while not received and time.monotonic() < deadline:
            server.timeout = max(0.1, deadline - time.monotonic())
            server.handle_request()
    if not received:
        raise click.ClickException(
            f"no answer on http://localhost:{port}/callback within {seconds} s"
        )
    return received
