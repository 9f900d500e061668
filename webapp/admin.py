"""Relay inside the Shopify admin: the app home and its session-token API.

Every route here is verified by the `shopifyapp` package from Shopify's
session (ID) token: page loads carry it as `id_token` in the query string,
App Bridge's `fetch` calls as `Authorization: Bearer`. The shop comes from
the verified token only, never from the request, so one shop's session can
never reach another shop's data. When verification fails, the package's own
response is returned untouched: it carries the status and headers App Bridge
needs to get a fresh token and retry.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, render_template
from flask import request as flask_request
from shopify_app import RequestInput

from relay import privacy
from relay.runtime import Runtime
from relay.shopify import install
from relay.shopify.api import PATCH_ID_TOKEN_PATH, shop_domain
from relay.shopify.webhooks import SHOP_DOMAIN
from relay.shops import find_shop

log = logging.getLogger(__name__)

blueprint = Blueprint("admin", __name__)
# Row ids are 32-bit integers on PostgreSQL; a larger one names no row.
MAX_ROW_ID = 2**31 - 1
SESSION_TOKEN_HORIZON = 3600  # seconds


def relay_runtime() -> Runtime:
    runtime: Runtime = current_app.extensions["relay"]
    return runtime


def _shopify_request() -> RequestInput:
    """The request as the package wants it, without its body.

    A session is checked from the headers and the URL alone. Given the body,
    the package walks it to redact its log, and a deeply nested JSON body
    made that a RecursionError before the token was even looked at.
    """
    return {
        "method": flask_request.method,
        "headers": dict(flask_request.headers),
        "url": flask_request.url,
        "body": "",
    }


def request_json() -> Any:
    """The request's JSON body, or None when it is not JSON (too deeply
    nested included, which Python's parser refuses with RecursionError)."""
    try:
        return flask_request.get_json(silent=True)
    except RecursionError:
        return None


def _answer(result: Any) -> Response:
    """The package's response, unchanged, unless it is a server error.

    The package answers 500 when Shopify could not be reached or refused the
    app's credentials; Relay answers 503 instead, as for any dependency that
    is down, and logs the package's code.
    """
    res = result.response
    if res.status >= 500:
        log.error("admin: Shopify call failed (%s)", result.log.code)
        response = jsonify(error="Shopify could not be reached; try again shortly")
        response.status_code = 503
        response.headers["Retry-After"] = "30"
        return response
    return Response(res.body, status=res.status, headers=dict(res.headers))


def verify_session() -> tuple[Any, Response | None]:
    try:
        verified = relay_runtime().shopify.verify_app_home(_shopify_request())
    except (AttributeError, TypeError, ValueError):
        # The package trips over some validly signed but malformed claims
        # (a non-string or unparsable `dest`); none is a session Relay serves.
        log.warning("admin: session token with malformed claims refused")
        return None, Response("Unauthorized", status=401)
    if not verified.ok:
        log.info("admin: session token not accepted (%s)", verified.log.code)
        return verified, _answer(verified)
    claims = verified.id_token.claims or {}
    if not _expires_soon(claims.get("exp")):
        # Shopify's session tokens last a minute; the package lets one with
        # no expiry, or a far one, through.
        log.warning("admin: session token without a near expiry refused")
        return verified, Response("Unauthorized", status=401)
    domain = shop_domain(verified.shop)
    dest = claims.get("dest")
    if not SHOP_DOMAIN.fullmatch(domain) or dest != f"https://{domain}":
        # Signed with our secret, so from Shopify; but a destination other
        # than a plain https://{shop}.myshopify.com is nothing Relay acts for,
        # and the token exchange would refuse it anyway.
        log.warning("admin: session token for a shop that is not a shop")
        return verified, Response("Unauthorized", status=401)
    return verified, None


def _expires_soon(expiry: Any) -> bool:
    """Whether a session token's `exp` is a time within the next hour
    (Shopify's own tokens expire after a minute; the margin is for clocks)."""
    if isinstance(expiry, bool) or not isinstance(expiry, (int, float)):
        return False
    return expiry <= time.time() + SESSION_TOKEN_HORIZON


@blueprint.get("/")
def app_home() -> Response:
    """The page Shopify opens in the admin; the first one sets the shop up."""
    verified, refusal = verify_session()
    if refusal is not None:
        return refusal

    failed = install.first_load(relay_runtime(), verified)
    if failed is not None:
        return _answer(failed)

    page = render_template(
        "app.html",
        api_key=relay_runtime().config.shopify_api_key,
        shop=shop_domain(verified.shop),
        dev=False,
    )
    # The package's headers let the admin frame the page (CSP frame-ancestors).
    response = Response(page, mimetype="text/html")
    for name, value in verified.response.headers.items():
        response.headers[name] = value
    return response


@blueprint.get(PATCH_ID_TOKEN_PATH)
def patch_id_token() -> Response:
    """Where the package sends a page load without a fresh session token."""
    # The package writes `shop` into a Content-Security-Policy header as is.
    shop = flask_request.args.get("shop")
    if shop is not None and not SHOP_DOMAIN.fullmatch(shop):
        return bad_request("shop must be a myshopify.com domain")
    return _answer(relay_runtime().shopify.patch_id_token_page(_shopify_request()))


@blueprint.get("/api/shop")
def shop_status() -> Response:
    """The session's shop, as the admin pages show it."""
    verified, refusal = verify_session()
    if refusal is not None:
        return refusal

    domain = shop_domain(verified.shop)
    with relay_runtime().db.session() as session:
        shop = find_shop(session, domain)
        if shop is None:
            return _not_set_up(domain)
        return jsonify(
            shop=shop.domain,
            installed=shop.installed,
            web_pixel=bool(shop.web_pixel_id),
        )


@blueprint.get("/api/privacy/reports")
def privacy_reports() -> Response:
    """The session's shop's data-request reports still kept, newest first."""
    verified, refusal = verify_session()
    if refusal is not None:
        return refusal

    runtime = relay_runtime()
    return jsonify(reports=privacy.list_reports(runtime, shop_domain(verified.shop)))


@blueprint.get("/api/privacy/reports/<int:report_id>")
def privacy_report(report_id: int) -> Response:
    verified, refusal = verify_session()
    if refusal is not None:
        return refusal

    runtime = relay_runtime()
    report = (
        privacy.read_report(runtime, shop_domain(verified.shop), report_id)
        if report_id <= MAX_ROW_ID
        else None
    )
    if report is None:
        # The same answer for another shop's report as for none at all.
        return Response(
            '{"error": "no such report"}', status=404, mimetype="application/json"
        )
    return jsonify(report)


def bad_request(reason: str) -> Response:
    response = jsonify(error=reason)
    response.status_code = 400
    return response


def _not_set_up(domain: str) -> Response:
    response = jsonify(error=f"{domain} has not opened Relay yet")
    response.status_code = 404
    return response
