"""`POST /webhooks`: verify a Shopify delivery, queue it, answer fast.

| answer | when                                                          |
| 401    | missing or wrong X-Shopify-Hmac-Sha256                        |
| 400    | a missing or malformed header, a body that is not a JSON object |
| 413    | a body over RELAY_WEBHOOK_MAX_BYTES                           |
| 200    | queued, a duplicate, or a topic Relay does not act on         |
| 503    | Redis unreachable: Shopify retries                            |
"""

from __future__ import annotations

import json
import logging

import redis
from flask import Blueprint, Response, current_app, jsonify, request

from relay import dashboard
from relay.errors import BadWebhook
from relay.intake import Acceptance, accept_webhook
from relay.runtime import Runtime
from relay.shopify.webhooks import (
    SHOP_DOMAIN,
    TOPICS,
    Handling,
    read_delivery,
    signature_is_valid,
)

log = logging.getLogger(__name__)

blueprint = Blueprint("webhooks", __name__)


@blueprint.post("/webhooks")
def receive() -> Response:
    runtime: Runtime = current_app.extensions["relay"]
    body = read_body(runtime.config.webhook_max_bytes)
    if body is None:
        log.warning(
            "webhook refused: body over %d bytes", runtime.config.webhook_max_bytes
        )
        return _answer(413, error="body is larger than any Shopify webhook")

    signature = request.headers.get("X-Shopify-Hmac-Sha256", "")
    secrets = runtime.config.webhook_secrets
    if not signature_is_valid(body, signature, secrets):
        why = "bad signature" if secrets else "SHOPIFY_API_SECRET is not set"
        log.warning("webhook from %s refused: %s", _claimed_shop(), why)
        return _answer(401, error="missing or invalid X-Shopify-Hmac-Sha256")

    try:
        delivery = read_delivery(request.headers)
        _require_json_object(body)
    except BadWebhook as error:
        log.warning("webhook refused: %s", error.reason)
        return _answer(error.status, error=error.reason)

    handling = TOPICS.get(delivery.topic)
    if handling is None:
        log.info(
            "webhook %s from %s: topic %s not used",
            delivery.webhook_id,
            delivery.shop,
            delivery.topic,
        )
        return _answer(200, status="ignored")
    if handling is Handling.ACKNOWLEDGE:
        _note_arrival(runtime, delivery.shop, delivery.topic)
        log.info(
            "webhook %s from %s: %s acknowledged",
            delivery.webhook_id,
            delivery.shop,
            delivery.topic,
        )
        return _answer(200, status="acknowledged")

    try:
        acceptance = accept_webhook(
            runtime.queue,
            runtime.config,
            shop=delivery.shop,
            topic=delivery.topic,
            webhook_id=delivery.webhook_id,
            body=body,
            arrived_at=runtime.clock.now(),
        )
    except redis.RedisError as error:
        log.error(
            "webhook %s from %s: Redis unreachable (%s), asking Shopify to retry",
            delivery.webhook_id,
            delivery.shop,
            type(error).__name__,
        )
        response = _answer(503, error="temporarily unable to accept webhooks")
        response.headers["Retry-After"] = "30"
        return response

    if acceptance is Acceptance.DUPLICATE:
        log.info(
            "webhook %s from %s: redelivery of %s acknowledged, not queued again",
            delivery.webhook_id,
            delivery.shop,
            delivery.topic,
        )
    return _answer(200, status=acceptance.value)


def _note_arrival(runtime: Runtime, shop: str, topic: str) -> None:
    """Record when `topic` last arrived for the dashboard's webhook health.

    A hint only: Redis failing here must not change Shopify's answer (the
    queueing that follows reports it when it matters).
    """
    try:
        dashboard.note_webhook(
            runtime.redis,
            shop,
            topic,
            runtime.clock.now(),
            runtime.config.delivery_log_days,
        )
    except redis.RedisError as error:
        log.warning(
            "webhook %s for %s: arrival not noted (%s)",
            topic,
            shop,
            type(error).__name__,
        )


def read_body(limit: int) -> bytes | None:
    """The raw body, or None when it is longer than `limit` bytes.

    Read here rather than trusting Content-Length, so a chunked body over
    the limit is refused as too large, not as a bad signature.
    """
    chunks: list[bytes] = []
    size = 0
    while chunk := request.stream.read(min(65536, limit + 1 - size)):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return None
    return b"".join(chunks)


def _claimed_shop() -> str:
    """The shop header for a log line, only if it looks like a shop domain.

    Anyone can send this header unsigned; echoing it would let them write
    whatever they like into Relay's logs.
    """
    claimed = request.headers.get("X-Shopify-Shop-Domain", "").strip().lower()
    return claimed if SHOP_DOMAIN.fullmatch(claimed) else "an unnamed shop"


def _require_json_object(body: bytes) -> None:
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        raise BadWebhook("body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise BadWebhook("body is not a JSON object")


def _answer(http_status: int, **fields: str) -> Response:
    response = jsonify(fields)
    response.status_code = http_status
    return response
