"""The admin pages' API: settings forms, the test event, counts, the log.

Every route is verified from Shopify's session token as in `webapp.admin`;
the shop is the token's, never one named in the request. Rows are looked
up through the shop, so another shop's delivery id answers 404 exactly as
a missing one does.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from flask import Blueprint, Response, jsonify
from flask import request as flask_request

from relay import conflicts, dashboard, settings_form, testevent
from relay.deadletters import resume_held
from relay.errors import BadInput, ShopifyError
from relay.models import Shop
from relay.shopify.api import shop_domain
from relay.shopify.orders import orders_since
from relay.shops import find_shop
from webapp.admin import (
    MAX_ROW_ID,
    bad_request,
    relay_runtime,
    request_json,
    verify_session,
)

log = logging.getLogger(__name__)

blueprint = Blueprint("dashboard", __name__)

WHOLE = re.compile(r"[0-9]{1,10}")
DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def _session_shop() -> str | Response:
    """The verified session's shop, or the refusal to answer with."""
    verified, refusal = verify_session()
    if refusal is not None:
        return refusal
    return shop_domain(verified.shop)


def _unknown(name: str) -> Response | None:
    if name in relay_runtime().plugins.destinations:
        return None
    return _error(404, f"no destination named {name}")


def _session_shop_for(name: str) -> str | Response:
    """The verified session's shop, or the refusal to answer with when the
    session or destination `name` is not one Relay knows."""
    shop = _session_shop()
    if isinstance(shop, Response):
        return shop
    return _unknown(name) or shop


@blueprint.get("/api/destinations")
def destinations() -> Response:
    shop = _session_shop()
    if isinstance(shop, Response):
        return shop
    runtime = relay_runtime()
    names = sorted(runtime.plugins.destinations)
    return jsonify(
        destinations=[settings_form.describe(runtime, shop, n) for n in names]
    )


@blueprint.get("/api/destinations/<name>/settings")
def settings(name: str) -> Response:
    shop = _session_shop_for(name)
    if isinstance(shop, Response):
        return shop
    return jsonify(settings_form.describe(relay_runtime(), shop, name))


@blueprint.post("/api/destinations/<name>/settings")
def save_settings(name: str) -> Response:
    """Save the form; 400 with a message per field when any is wrong."""
    shop = _session_shop_for(name)
    if isinstance(shop, Response):
        return shop
    runtime = relay_runtime()
    try:
        settings_form.save(runtime, shop, name, request_json())
    except settings_form.InvalidSettings as error:
        response = jsonify(error=error.reason, fields=error.fields)
        response.status_code = 400
        return response
    except BadInput as error:
        return bad_request(error.reason)
    # As after `relay destinations set`: new settings send what a refusal
    # held, and may change what the conflict check finds.
    resumed = resume_held(runtime, shop, name)
    conflicts.queue_check(runtime, shop, name)
    return jsonify(
        saved=True,
        resumed=resumed,
        settings=settings_form.describe(runtime, shop, name),
    )


@blueprint.post("/api/destinations/<name>/test-event")
def send_test_event(name: str) -> Response:
    shop = _session_shop_for(name)
    if isinstance(shop, Response):
        return shop
    try:
        return jsonify(testevent.send(relay_runtime(), shop, name))
    except testevent.NotReady as error:
        return _error(409, str(error))


@blueprint.get("/api/stats")
def stats() -> Response:
    shop = _session_shop()
    if isinstance(shop, Response):
        return shop
    period = flask_request.args.get("period", "24h")
    if period not in dashboard.PERIODS:
        return bad_request(f"period must be one of {', '.join(dashboard.PERIODS)}")
    runtime = relay_runtime()
    return _with_shop(
        shop,
        lambda session, row: dashboard.stats(
            session, runtime.plugins, row, period, runtime.clock.now()
        ),
    )


@blueprint.get("/api/accuracy")
def accuracy() -> Response:
    """Orders against purchases delivered; asks Shopify for its orders."""
    shop = _session_shop()
    if isinstance(shop, Response):
        return shop
    period = flask_request.args.get("period", "24h")
    if period not in dashboard.PERIODS:
        return bad_request(f"period must be one of {', '.join(dashboard.PERIODS)}")
    runtime = relay_runtime()
    now = runtime.clock.now()
    note = None
    try:
        listed = orders_since(runtime, shop, now - dashboard.PERIODS[period].span)
    except ShopifyError as error:
        # The counts from Relay's own records still stand; say what is missing.
        log.info("shop %s: orders not listed for the dashboard: %s", shop, error)
        listed = None
        note = (
            f"Shopify's list of orders could not be read ({error.reason}); "
            "only the orders Relay received are counted."
        )
    return _with_shop(
        shop,
        lambda session, row: {
            **dashboard.accuracy_report(
                session, runtime.plugins, row, period, now, listed
            ),
            "note": note,
        },
    )


@blueprint.get("/api/deliveries")
def deliveries() -> Response:
    shop = _session_shop()
    if isinstance(shop, Response):
        return shop
    limit = _whole(flask_request.args.get("limit"), DEFAULT_LIMIT)
    before = _whole(flask_request.args.get("before"), None)
    if limit is None or not 1 <= limit <= MAX_LIMIT:
        return bad_request(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    if before is not None and not 1 <= before <= MAX_ROW_ID:
        return bad_request("before must be a delivery id")
    status = flask_request.args.get("status") or None
    if status is not None and status not in dashboard.STATUSES:
        return bad_request(f"status must be one of {', '.join(dashboard.STATUSES)}")
    return _with_shop(
        shop,
        lambda session, row: {
            "deliveries": dashboard.recent(session, row, limit, before, status)
        },
    )


@blueprint.get("/api/deliveries/<int:delivery_id>")
def delivery(delivery_id: int) -> Response:
    shop = _session_shop()
    if isinstance(shop, Response):
        return shop
    with relay_runtime().db.session() as session:
        row = find_shop(session, shop)
        found = (
            dashboard.one(session, row, delivery_id)
            if row is not None and delivery_id <= MAX_ROW_ID
            else None
        )
        if found is None:
            # The same answer for another shop's delivery as for none at all.
            return _error(404, "no such delivery")
        return jsonify(found)


@blueprint.get("/api/health")
def health() -> Response:
    shop = _session_shop()
    if isinstance(shop, Response):
        return shop
    runtime = relay_runtime()
    webhooks = dashboard.webhook_times(runtime.redis, shop)
    return _with_shop(
        shop,
        lambda session, row: dashboard.health(session, runtime.plugins, row, webhooks),
    )


def _with_shop(shop: str, read: Any) -> Response:
    with relay_runtime().db.session() as session:
        row: Shop | None = find_shop(session, shop)
        if row is None:
            return _error(404, f"{shop} has not opened Relay yet")
        return jsonify(read(session, row))


def _whole(raw: str | None, default: int | None) -> int | None:
    """A query parameter as a whole number; `default` when absent, else
    -1 for anything that is not one (every caller refuses it)."""
    if raw is None:
        return default
    return int(raw) if WHOLE.fullmatch(raw) else -1


def _error(status: int, reason: str) -> Response:
    response = jsonify(error=reason)
    response.status_code = status
    return response
