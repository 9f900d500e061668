"""Connecting destinations by OAuth, and the conflict check, for the admin.

The `/api/...` routes are called by Relay's admin pages with App Bridge's
session token, verified as in `webapp.admin`; the shop is the token's. The
callback is where the platform sends the merchant back: it carries no
session token, so the shop comes from the encrypted `state` Relay issued.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from flask import Blueprint, Response, jsonify, render_template_string
from flask import request as flask_request

from relay import conflicts, connections
from relay.errors import BadInput, ConfigError, PlatformRefused, PlatformUnavailable
from relay.shopify.api import shop_domain
from relay.shops import find_shop
from webapp.admin import bad_request, relay_runtime, request_json, verify_session

log = logging.getLogger(__name__)

blueprint = Blueprint("connect", __name__)

DIGITS = re.compile(r"[0-9]{1,18}")
MAX_FORM_FIELD = 4096

CONNECTED = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Relay</title></head>
<body>
  <h1>{{ title }}</h1>
  <p>{{ message }}</p>
</body>
</html>
"""


@blueprint.get("/connect/<destination>/callback")
def callback(destination: str) -> Response:
    """The platform's redirect back after the merchant allowed (or refused)."""
    runtime = relay_runtime()
    if destination not in runtime.plugins.destinations:
        return _page(404, "Unknown destination", "Relay has no such destination.")
    if flask_request.args.get("error"):
        return _page(
            400,
            "Not connected",
            "The connection was not allowed. Start again from Relay when ready.",
        )
    state = flask_request.args.get("state", "")[:MAX_FORM_FIELD]
    code = flask_request.args.get("code", "")[:MAX_FORM_FIELD]
    if not state or not code:
        return _page(400, "Not connected", "The platform sent no code or state.")
    try:
        shop = connections.finish(runtime, destination, state, code)
    except BadInput as error:
        return _page(400, "Not connected", error.reason)
    except PlatformRefused as error:
        log.warning("connect %s: code refused: %s", destination, error.reason)
        return _page(400, "Not connected", f"The platform refused: {error.detail}")
    except PlatformUnavailable as error:
        log.warning("connect %s: platform unavailable: %s", destination, error.reason)
        return _page(503, "Not connected yet", "The platform did not answer; retry.")
    title = runtime.plugins.destination(destination).title
    return _page(
        200,
        f"{title} is connected",
        f"Relay is connected with {title} for {shop}. Return to Relay in your "
        "Shopify admin to choose the ad account.",
    )


@blueprint.post("/api/destinations/<destination>/connect")
def start(destination: str) -> Response:
    verified, refusal = verify_session()
    if refusal is not None:
        return refusal
    known = _known(destination)
    if known is not None:
        return known
    try:
        url = connections.start(
            relay_runtime(), shop_domain(verified.shop), destination
        )
    except ConfigError as error:
        return bad_request(str(error))
    return jsonify(authorize_url=url)


@blueprint.get("/api/destinations/<destination>/accounts")
def accounts(destination: str) -> Response:
    verified, refusal = verify_session()
    if refusal is not None:
        return refusal
    shop = shop_domain(verified.shop)
    return _platform_call(
        destination,
        lambda: [
            vars(a) for a in connections.accounts(relay_runtime(), shop, destination)
        ],
    )


@blueprint.get("/api/destinations/<destination>/accounts/<account_id>/tags")
def tags(destination: str, account_id: str) -> Response:
    verified, refusal = verify_session()
    if refusal is not None:
        return refusal
    if not DIGITS.fullmatch(account_id):
        return bad_request("account id must be digits")
    shop = shop_domain(verified.shop)
    return _platform_call(
        destination,
        lambda: [
            vars(t)
            for t in connections.tags(relay_runtime(), shop, destination, account_id)
        ],
    )


@blueprint.post("/api/destinations/<destination>/account")
def choose(destination: str) -> Response:
    verified, refusal = verify_session()
    if refusal is not None:
        return refusal
    body = request_json()
    if not isinstance(body, dict):
        return bad_request("expected a JSON object with account_id")
    account_id, tag_id = body.get("account_id"), body.get("tag_id")
    if not isinstance(account_id, str) or not DIGITS.fullmatch(account_id):
        return bad_request("account_id must be a string of digits")
    if tag_id is not None and (
        not isinstance(tag_id, str) or not DIGITS.fullmatch(tag_id)
    ):
        return bad_request("tag_id must be a string of digits")
    runtime = relay_runtime()
    shop = shop_domain(verified.shop)

    def save() -> Any:
        saved = connections.choose_account(
            runtime, shop, destination, account_id, tag_id
        )
        conflicts.queue_check(runtime, shop, destination)
        return {"saved": saved, "conflict_check": "queued"}

    return _platform_call(destination, save)


@blueprint.get("/api/conflicts")
def last_checks() -> Response:
    verified, refusal = verify_session()
    if refusal is not None:
        return refusal
    runtime = relay_runtime()
    found = []
    with runtime.db.session() as session:
        shop = find_shop(session, shop_domain(verified.shop))
        for name in sorted(runtime.plugins.destinations):
            result = conflicts.last_result(session, shop, name) if shop else None
            if result is not None:
                found.append(_result_json(result))
    return jsonify(checks=found)


@blueprint.post("/api/conflicts/<destination>/acknowledge")
def acknowledge(destination: str) -> Response:
    verified, refusal = verify_session()
    if refusal is not None:
        return refusal
    body = request_json()
    key = body.get("key") if isinstance(body, dict) else None
    if not isinstance(key, str) or not 0 < len(key) <= 200:
        return bad_request("expected a JSON object with the finding's key")
    try:
        finding = conflicts.acknowledge(
            relay_runtime(), shop_domain(verified.shop), destination, key
        )
    except ConfigError:
        response = jsonify(error="no such finding in the last check")
        response.status_code = 404
        return response
    return jsonify(acknowledged=finding.to_dict())


def _result_json(result: conflicts.CheckResult) -> dict[str, Any]:
    return {
        "destination": result.destination,
        "checked_at": result.checked_at.isoformat(),
        "verdict": result.verdict.value,
        "findings": [
            {**f.to_dict(), "acknowledged": f.key in result.acknowledged}
            for f in result.findings
        ],
    }


def _platform_call(destination: str, call: Any) -> Response:
    known = _known(destination)
    if known is not None:
        return known
    try:
        return jsonify(result=call())
    except BadInput as error:
        return bad_request(error.reason)
    except ConfigError as error:
        return bad_request(str(error))
    except PlatformRefused as error:
        response = jsonify(error=error.reason, reconnect=True)
        response.status_code = 409
        return response
    except PlatformUnavailable as error:
        response = jsonify(error=error.reason)
        response.status_code = 503
        response.headers["Retry-After"] = "30"
        return response


def _known(destination: str) -> Response | None:
    runtime = relay_runtime()
    known = runtime.plugins.destinations.get(destination)
    if known is None or known.oauth is None:
        response = jsonify(error=f"{destination} cannot be connected by OAuth")
        response.status_code = 404
        return response
    return None


def _page(status: int, title: str, message: str) -> Response:
    page = render_template_string(CONNECTED, title=title, message=message)
    return Response(page, status=status, mimetype="text/html")
