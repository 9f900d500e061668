"""Shopify webhook deliveries: signatures, headers and what each topic means."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from relay.errors import BadWebhook

# Shopify's shop domains; the tenant key must never come from a payload.
SHOP_DOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]{0,61}\.myshopify\.com$")
# Topics and webhook ids are short printable ASCII (ids are UUIDs); checking
# them keeps what reaches Redis keys and log lines to what Shopify sends.
TOPIC = re.compile(r"^[a-z_]{1,40}/[a-z_]{1,40}$")
WEBHOOK_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class Handling(Enum):
    """What intake does with a topic."""

    QUEUE = "queue"  # verified, stored briefly, processed by a job
    ACKNOWLEDGE = "acknowledge"  # answered 200 and logged; nothing stored


TOPICS: dict[str, Handling] = {
    "orders/create": Handling.QUEUE,
    "orders/paid": Handling.QUEUE,
    "orders/updated": Handling.QUEUE,
    "checkouts/create": Handling.QUEUE,
    "carts/create": Handling.QUEUE,
    "carts/update": Handling.QUEUE,
    "app/uninstalled": Handling.QUEUE,
    # Privacy requests are queued like the rest (Shopify wants 200 fast) and
    # carried out by `relay.privacy`; their bodies leave Redis once done.
    "customers/data_request": Handling.QUEUE,
    "customers/redact": Handling.QUEUE,
    "shop/redact": Handling.QUEUE,
}


class Headers(Protocol):
    """HTTP headers looked up case-insensitively, as werkzeug's are."""

    def get(self, key: str, default: str) -> str: ...


@dataclass(frozen=True)
class Delivery:
    """The headers of one verified webhook delivery."""

    topic: str
    shop: str
    webhook_id: str
    triggered_at: str | None
    api_version: str | None


def signature_is_valid(body: bytes, signature: str, secrets: Iterable[str]) -> bool:
    """Whether `signature` is Shopify's base64 HMAC-SHA256 of `body`.

    Checked against every secret given, so a previous secret keeps working
    while Shopify still signs with it during a rotation. Compared in constant
    time; a signature that is not ASCII cannot be one of ours.
    """
    if not signature or not signature.isascii():
        return False

    sent = signature.encode("ascii")
    valid = False
    for secret in secrets:
        digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
        # No early exit: every secret costs the same whichever one matches.
        valid |= hmac.compare_digest(base64.b64encode(digest), sent)
    return valid


def sign(body: bytes, secret: str) -> str:
    """The signature Shopify would send for `body`; for tests and tools."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def read_delivery(headers: Headers) -> Delivery:
    """The delivery's headers, checked; raises BadWebhook naming what is wrong."""
    topic = headers.get("X-Shopify-Topic", "").strip()
    shop = headers.get("X-Shopify-Shop-Domain", "").strip().lower()
    webhook_id = headers.get("X-Shopify-Webhook-Id", "").strip()

    if not topic:
        raise BadWebhook("missing X-Shopify-Topic header")
    if not shop:
        raise BadWebhook("missing X-Shopify-Shop-Domain header")
    if not SHOP_DOMAIN.fullmatch(shop):
        raise BadWebhook("X-Shopify-Shop-Domain is not a myshopify.com domain")
    if not webhook_id:
        raise BadWebhook("missing X-Shopify-Webhook-Id header")
    if not TOPIC.fullmatch(topic):
        raise BadWebhook("X-Shopify-Topic is not a topic such as orders/create")
    if not WEBHOOK_ID.fullmatch(webhook_id):
        raise BadWebhook("X-Shopify-Webhook-Id has unexpected characters or length")

    return Delivery(
        topic=topic,
        shop=shop,
        webhook_id=webhook_id,
        triggered_at=headers.get("X-Shopify-Triggered-At", "") or None,
        api_version=headers.get("X-Shopify-API-Version", "") or None,
    )
