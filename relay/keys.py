"""Redis key names and RQ job ids, in one place so privacy deletion finds them."""

from __future__ import annotations

import secrets

PREFIX = "relay"


def webhook_seen(shop: str, webhook_id: str) -> str:
    """Marks a delivery as accepted, for as long as Shopify may redeliver it."""
    return f"{PREFIX}:webhook-seen:{shop}:{webhook_id}"


def webhook_last(shop: str) -> str:
    """When each topic's last webhook was accepted, for the dashboard."""
    return f"{PREFIX}:webhook-last:{shop}"


def inbox(shop: str, webhook_id: str) -> str:
    """A webhook body waiting for its job; deleted once processed."""
    return f"{PREFIX}:inbox:{shop}:{webhook_id}"


def event(event_pk: int) -> str:
    """A normalized event (personal data included) waiting for delivery."""
    return f"{PREFIX}:event:{event_pk}"


def cart(shop: str, token: str) -> str:
    """A cart's lines, kept for the browser-side matching to come."""
    return f"{PREFIX}:cart:{shop}:{token}"


def token_refresh(shop: str) -> str:
    """Held while one process refreshes a shop's access token."""
    return f"{PREFIX}:token-refresh:{shop}"


def delivery_job(delivery_id: int) -> str:
    """The RQ job id of a delivery, so it is never queued twice."""
    return f"deliver-{delivery_id}"


def outbox(destination: str, shop: str) -> str:
    """Delivery ids waiting for a shop's next batch to a destination."""
    return f"{PREFIX}:outbox:{destination}:{shop}"


def outboxes() -> str:
    """Every (shop, destination) that has had an outbox, for recovery."""
    return f"{PREFIX}:outboxes"


def outbox_flush(destination: str, shop: str) -> str:
    """Set while a flush of the outbox is queued or scheduled."""
    return f"{PREFIX}:outbox-flush:{destination}:{shop}"


def batch(job_id: str) -> str:
    """The delivery ids a flush job claimed, until they have an outcome."""
    return f"{PREFIX}:batch:{job_id}"


def batch_job(destination: str) -> str:
    """A new flush job's id; its batch list is named after it."""
    return f"send-{destination}-{secrets.token_hex(8)}"


def batches() -> str:
    """Every claimed batch, with when it was claimed."""
    return f"{PREFIX}:batches"


def intake() -> str:
    """Webhooks and beacons accepted and not yet normalized (ids only)."""
    return f"{PREFIX}:intake"


def intake_drain() -> str:
    """Set while a drain job of the intake list is queued."""
    return f"{PREFIX}:intake-drain"


def drain_job() -> str:
    """A new drain job's id; its batch list is named after it."""
    return f"drain-{secrets.token_hex(8)}"


def beacon(shop: str, client_id: str, event_id: str) -> str:
    """A pixel beacon waiting for its job; deleted once processed.

    Keyed by client id too: a stranger who guessed an event id must not be
    able to have the visitor's own beacon dropped as a repeat.
    """
    return f"{PREFIX}:beacon:{shop}:{client_id}:{event_id}"


def visitor(shop: str, client_id: str) -> str:
    """A visitor's profile: click id, IP, user agent, the ids linked to it."""
    return f"{PREFIX}:visitor:{shop}:{client_id}"


def visitor_link(shop: str, kind: str, value: str) -> str:
    """Which visitor a cart, checkout, order, customer or email belongs to."""
    return f"{PREFIX}:visitor-link:{shop}:{kind}:{value}"


def visitor_links(shop: str, client_id: str) -> str:
    """The link keys pointing at a visitor, so deleting it deletes them."""
    return f"{PREFIX}:visitor-links:{shop}:{client_id}"


def visitor_shop(client_id: str) -> str:
    """The shop a pixel client id first appeared in.

    Client ids come from a first-party cookie, one per storefront: the same
    id in a beacon naming another shop is a forgery, refused at intake.
    """
    return f"{PREFIX}:visitor-shop:{client_id}"


def connection_refresh(shop: str, destination: str) -> str:
    """Held while one process refreshes a shop's OAuth grant at a platform."""
    return f"{PREFIX}:connection-refresh:{shop}:{destination}"


def oauth_state(digest: str) -> str:
    """Marks an OAuth state as used, for as long as it would be accepted."""
    return f"{PREFIX}:oauth-state:{digest}"
