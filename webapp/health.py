"""`/healthz`: whether this web process can reach Redis and the database."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify

log = logging.getLogger(__name__)

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz():  # type: ignore[no-untyped-def]
    runtime = current_app.extensions["relay"]
    checks = {"redis": runtime.redis.ping, "database": runtime.db.ping}
    report = {}
    for name, check in checks.items():
        try:
            check()
            report[name] = "ok"
        except Exception as error:  # any failure means unhealthy, whatever its kind
            log.warning("healthz: %s unreachable: %s", name, type(error).__name__)
            report[name] = "unreachable"

    healthy = all(state == "ok" for state in report.values())
    return jsonify(
        status="ok" if healthy else "unhealthy", **report
    ), 200 if healthy else 503
