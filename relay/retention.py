"""How long Relay keeps each kind of data, and the job that enforces it.

The lifetimes, and the settings that change them, are listed for merchants
in docs/privacy.md. Redis enforces its own with key TTLs; `enforce` deletes
database rows past theirs, deletes the data of shops uninstalled long ago
whose shop/redact never came, and gives any of Relay's Redis keys found
without a TTL the lifetime of its kind, so a key written by a bug or an
older release cannot live forever. `relay cron` queues it hourly through
RQ's cron scheduler; `relay retention` runs it at once.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import delete, or_, select

from relay import keys, privacy
from relay.carts import CART_SECONDS
from relay.models import Delivery, EventRecord, PrivacyReport, Shop
from relay.runtime import Runtime

log = logging.getLogger(__name__)

EVERY_SECONDS = 3600
DESCRIPTIONS = {
    "deliveries": "delivery log entries deleted",
    "events": "events deleted",
    "privacy_reports": "privacy reports deleted",
    "privacy_requests": "privacy request records deleted",
    "uninstalled_shops": "uninstalled shops deleted",
    "redis_keys_given_ttl": "Redis keys found without a lifetime and given one",
}


def enforce(runtime: Runtime) -> dict[str, int]:
    """Delete what has outlived its lifetime; returns counts per kind."""
    config = runtime.config
    now = runtime.clock.now()
    log_cutoff = now - timedelta(days=config.delivery_log_days)
    counts: dict[str, int] = {}

    with runtime.db.session() as session:
        old_events = select(EventRecord.id).where(EventRecord.created_at < log_cutoff)
        counts["deliveries"] = _rowcount(
            session.execute(
                delete(Delivery).where(
                    or_(
                        Delivery.created_at < log_cutoff,
                        Delivery.event_pk.in_(old_events),
                    )
                )
            )
        )
        counts["events"] = _rowcount(
            session.execute(
                delete(EventRecord).where(EventRecord.created_at < log_cutoff)
            )
        )
        counts["privacy_reports"] = _rowcount(
            session.execute(
                delete(PrivacyReport).where(PrivacyReport.expires_at <= now)
            )
        )
        counts["privacy_requests"] = privacy.stale_privacy(
            session, now - timedelta(days=config.privacy_request_days)
        )
        abandoned = list(
            session.scalars(
                select(Shop.domain).where(
                    Shop.installed.is_(False),
                    Shop.uninstalled_at
                    < now - timedelta(days=config.uninstalled_shop_days),
                )
            )
        )

    for domain in abandoned:
        log.info("retention: shop %s uninstalled long ago, deleting its data", domain)
        privacy.redact_shop(runtime, domain)
    counts["uninstalled_shops"] = len(abandoned)
    counts["redis_keys_given_ttl"] = _cap_redis_lifetimes(runtime)

    log.info(
        "retention: deleted %s",
        ", ".join(f"{kind} {count}" for kind, count in sorted(counts.items())),
    )
    return counts


def _cap_redis_lifetimes(runtime: Runtime) -> int:
    """Give each of Relay's Redis keys without a TTL its kind's lifetime."""
    config = runtime.config
    lifetimes = {
        "webhook-seen": config.webhook_dedupe_seconds,
        "webhook-last": config.delivery_log_days * 24 * 3600,
        "inbox": config.inbox_seconds,
        "event": config.event_seconds,
        "cart": CART_SECONDS,
        "token-refresh": 60,
        "connection-refresh": 60,
        "oauth-state": 15 * 60,
        "beacon": config.inbox_seconds,
        "visitor": config.visitor_profile_days * 24 * 3600,
        "visitor-link": config.visitor_profile_days * 24 * 3600,
        "visitor-links": config.visitor_profile_days * 24 * 3600,
        "visitor-shop": config.visitor_profile_days * 24 * 3600,
    }
    fixed = 0
    for key in runtime.redis.scan_iter(match=f"{keys.PREFIX}:*", count=1000):
        # Bytes from Redis; a key written by anything but Relay may not be UTF-8.
        name = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
        kind = name.split(":", 2)[1] if name.count(":") >= 2 else ""
        lifetime = lifetimes.get(kind)
        if lifetime and runtime.redis.ttl(key) == -1:
            runtime.redis.expire(key, lifetime)
            fixed += 1
    return fixed


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)
