"""The baseline for bench/intake.py: a Flask endpoint that does nothing.

It reads the body and answers what Relay answers for a queued webhook, so
the difference between the two is Relay's own work: verifying the HMAC and
the headers, parsing the body and one Redis transaction.
"""

from __future__ import annotations

from flask import Flask, jsonify, request


def create_app() -> Flask:
    app = Flask(__name__)

    @app.post("/webhooks")
    def webhooks():  # type: ignore[no-untyped-def]
        request.get_data()
        return jsonify(status="queued")

    return app
