"""`POST /pixel`: beacons from Relay's Web Pixel, checked, queued, answered fast.

| answer | when                                                             |
| 204    | queued, or a repeat of a beacon already queued                   |
| 400    | not JSON, or not the envelope `relay.beacons.ENVELOPE` describes  |
| 404    | the shop does not have Relay installed                           |
| 413    | a body over RELAY_PIXEL_MAX_BYTES                                |
| 503    | Redis unreachable                                                |

Any origin may send: storefronts live on their merchants' own domains and
the pixel's sandbox has an opaque origin. No cookie or credential is ever
read, so `Access-Control-Allow-Origin: *` gives a page nothing it could
abuse. The pixel sends `text/plain`, which needs no preflight; OPTIONS is
answered anyway for clients that ask.
"""

from __future__ import annotations

import logging
import time

import redis
from flask import Blueprint, Response, current_app, jsonify, request

from relay.beacons import accept_beacon, read_beacon
from relay.errors import BadInput
from relay.runtime import Runtime
from relay.shops import find_shop
from webapp.webhooks import read_body

log = logging.getLogger(__name__)

blueprint = Blueprint("pixel", __name__)

# Beacons come by the thousand a minute; whether a shop has Relay installed
# changes rarely, so each app keeps the answer this long.
SHOP_CACHE_SECONDS = 30


@blueprint.route("/pixel", methods=["OPTIONS"])
def preflight() -> Response:
    response = Response(status=204)
    response.headers["Access-Control-Allow-Methods"] = "POST"
    response.headers["Access-Control-Allow-Headers"] = "Content-Type"
    response.headers["Access-Control-Max-Age"] = "86400"
    return response


@blueprint.post("/pixel")
def receive() -> Response:
    runtime: Runtime = current_app.extensions["relay"]
    body = read_body(runtime.config.pixel_max_bytes)
    if body is None:
        return _answer(413, "beacon is larger than any pixel event")
    try:
        beacon = read_beacon(body)
    except BadInput as error:
        log.info("beacon refused: %s", error.reason)
        return _answer(error.status, error.reason)
    if not _installed(runtime, beacon.shop):
        log.info("beacon refused: %s does not have Relay installed", beacon.shop)
        return _answer(404, "this shop does not use Relay")

    try:
        accept_beacon(
            runtime.queue,
            runtime.config,
            beacon,
            request.remote_addr,
            runtime.clock.now(),
        )
    except BadInput as error:
        log.info("beacon refused for %s: %s", beacon.shop, error.reason)
        return _answer(error.status, error.reason)
    except redis.RedisError as error:
        log.error(
            "beacon from %s: Redis unreachable (%s)", beacon.shop, type(error).__name__
        )
        response = _answer(503, "temporarily unable to accept beacons")
        response.headers["Retry-After"] = "30"
        return response
    return Response(status=204)


@blueprint.after_request
def allow_any_origin(response: Response) -> Response:
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


def _installed(runtime: Runtime, shop: str) -> bool:
    cache: dict[str, tuple[bool, float]] = current_app.extensions.setdefault(
        "relay_installed_shops", {}
    )
    cached = cache.get(shop)
    now = time.monotonic()
    if cached is not None and cached[1] > now:
        return cached[0]
    with runtime.db.session() as session:
        row = find_shop(session, shop)
        installed = row is not None and row.installed
    cache[shop] = (installed, now + SHOP_CACHE_SECONDS)
    return installed


def _answer(status: int, error: str) -> Response:
    response = jsonify(error=error)
    response.status_code = status
    return response
