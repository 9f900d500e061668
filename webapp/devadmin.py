"""Development mode: the admin pages outside Shopify, offline.

Only registered when `RELAY_DEV_ADMIN=1` (see `relay.config`, which refuses
it in a deployment). `/dev/admin?shop=…` serves the same page as the
admin's app home, without Shopify's CDN; its stand-in for App Bridge asks
`/dev/session-token` for session tokens, signed here as Shopify signs them,
so every API call is verified exactly as inside the admin.
"""

from __future__ import annotations

import time
import uuid

import jwt
from flask import Blueprint, Response, render_template
from flask import request as flask_request

from relay.shopify.webhooks import SHOP_DOMAIN
from relay.shops import ensure_shop
from webapp.admin import bad_request, relay_runtime

blueprint = Blueprint("devadmin", __name__)

# As long as Shopify's own session tokens live.
TOKEN_SECONDS = 60


@blueprint.get("/dev/admin")
def page() -> Response:
    shop = _shop()
    if shop is None:
        return bad_request(
            "shop must be a myshopify.com domain, e.g. ?shop=x.myshopify.com"
        )
    runtime = relay_runtime()
    # In development a shop becomes known by opening it, as by `relay replay`.
    with runtime.db.session() as session:
        ensure_shop(session, shop, runtime.clock.now())
    page = render_template(
        "app.html", api_key=runtime.config.shopify_api_key, shop=shop, dev=True
    )
    return Response(page, mimetype="text/html")


@blueprint.get("/dev/session-token")
def session_token() -> Response:
    shop = _shop()
    if shop is None:
        return bad_request("shop must be a myshopify.com domain")
    config = relay_runtime().config
    now = int(time.time())
    claims = {
        "iss": f"https://{shop}/admin",
        "dest": f"https://{shop}",
        "aud": config.shopify_api_key,
        "sub": "dev",
        "exp": now + TOKEN_SECONDS,
        "nbf": now - 5,
        "iat": now - 5,
        "jti": uuid.uuid4().hex,
        "sid": f"dev-{shop}",
    }
    token = jwt.encode(claims, config.shopify_api_secret, algorithm="HS256")
    response = Response(token, mimetype="text/plain")
    response.headers["Cache-Control"] = "no-store"
    return response


def _shop() -> str | None:
    shop = flask_request.args.get("shop", "")
    return shop if SHOP_DOMAIN.fullmatch(shop) else None
