"""What the merchant's dashboard shows, read from the delivery log.

Everything here reads `deliveries` and `events` for one shop (the session's)
and never writes. Counts are per destination over a period ending now:

- received: deliveries made (one per event and destination);
- sent, failed, retrying, held, queued, skipped: by current status, skipped
  grouped by reason (`skip_reason`);
- delivery rate: sent over what was meant to go out (received minus skipped);
- match-key coverage: the share of sent events carrying each key;
- estimated match quality: Relay's own 0-10 estimate from the keys sent,
  weighted by how much each tends to help a platform match (not the
  platform's score);
- accuracy: the orders of the period (Relay's purchases, and the orders
  Shopify lists that Relay never heard of) against the purchases delivered,
  with a reason for every gap.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from relay import keys
from relay.models import Delivery, DestinationSetting, EventRecord, Shop
from relay.plugins import Plugins
from relay.shopify.orders import ShopOrders

STATUSES = ("sent", "failed", "retrying", "held", "queued", "skipped")


@dataclass(frozen=True)
class Period:
    span: timedelta
    bucket: timedelta


PERIODS = {
    "24h": Period(timedelta(hours=24), timedelta(hours=1)),
    "7d": Period(timedelta(days=7), timedelta(days=1)),
}

# Match keys as destinations name them in the log (Pinterest's and Meta's
# names), grouped as the merchant thinks of them.
MATCH_KEYS: dict[str, tuple[str, ...]] = {
    "email": ("em",),
    "phone": ("ph",),
    "click_id": ("click_id",),
    "ip_user_agent": ("client_ip_address", "client_user_agent"),
    "external_id": ("external_id",),
}
# How much each key adds to the estimate; they sum to 10.
MATCH_WEIGHTS = {
    "email": 4.0,
    "phone": 2.0,
    "click_id": 2.0,
    "ip_user_agent": 1.0,
    "external_id": 1.0,
}
QUALITY_LABELS = ((8.0, "great"), (6.0, "good"), (3.0, "fair"), (0.0, "low"))

# Skip reasons, by the start of the log's reason, as the dashboard groups them.
SKIP_GROUPS = (
    ("consent:", "consent"),
    ("no match keys", "no match keys"),
    ("unsupported", "unsupported event"),
    ("event type turned off", "event type turned off"),
    ("too old", "too old"),
    ("in the future", "in the future"),
    ("test order", "test order"),
    ("shop uninstalled", "shop uninstalled"),
    ("destination disabled", "destination disabled"),
    ("conflict:", "held back by a conflict"),
)


def skip_reason(reason: str | None) -> str:
    """The group a skipped delivery's reason is counted under."""
    text = reason or "no reason recorded"
    for start, group in SKIP_GROUPS:
        if text.startswith(start):
            return group
    return text


def match_groups(match_keys: Iterable[str]) -> set[str]:
    """The merchant's match-key groups a delivery's keys cover."""
    present = set(match_keys)
    return {
        group
        for group, names in MATCH_KEYS.items()
        if all(name in present for name in names)
    }


def quality(score: float | None) -> dict[str, Any] | None:
    if score is None:
        return None
    label = next(name for least, name in QUALITY_LABELS if score >= least)
    return {"score": round(score, 1), "label": label}


@dataclass(frozen=True)
class Row:
    destination: str
    status: str
    reason: str | None
    match_keys: list[str]
    created_at: datetime


def stats(
    session: Session, plugins: Plugins, shop: Shop, period: str, now: datetime
) -> dict[str, Any]:
    """The dashboard's numbers for `shop` over `period` ("24h" or "7d")."""
    span = PERIODS[period]
    since = now - span.span
    query = select(
        Delivery.destination,
        Delivery.status,
        Delivery.reason,
        Delivery.match_keys,
        Delivery.created_at,
    ).where(Delivery.shop_id == shop.id, Delivery.created_at >= since)
    rows = [Row(*found) for found in session.execute(query)]
    by_destination: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_destination[row.destination].append(row)
    names = sorted(set(by_destination) | set(_set_up(session, shop)))
    return {
        "period": period,
        "since": since.isoformat(),
        "until": now.isoformat(),
        "destinations": [
            {
                "name": name,
                "title": _title(plugins, name),
                **_summary(by_destination[name]),
                "series": _series(by_destination[name], since, span.bucket, now),
            }
            for name in names
        ],
    }


def _summary(rows: Sequence[Row]) -> dict[str, Any]:
    statuses = Counter(row.status for row in rows)
    skipped = Counter(skip_reason(r.reason) for r in rows if r.status == "skipped")
    sent = [row for row in rows if row.status == "sent"]
    meant = len(rows) - statuses["skipped"]
    covered = Counter(group for row in sent for group in match_groups(row.match_keys))
    score = (
        sum(sum(MATCH_WEIGHTS[g] for g in match_groups(row.match_keys)) for row in sent)
        / len(sent)
        if sent
        else None
    )
    return {
        "counts": {"received": len(rows), **{s: statuses[s] for s in STATUSES}},
        "skipped_reasons": [
            {"reason": reason, "count": count}
            for reason, count in sorted(skipped.items(), key=lambda i: (-i[1], i[0]))
        ],
        "delivery_rate": round(len(sent) / meant, 4) if meant else None,
        "match_keys": {
            group: round(covered[group] / len(sent), 4) if sent else None
            for group in MATCH_KEYS
        },
        "match_quality": quality(score),
    }


def _series(
    rows: Sequence[Row], since: datetime, bucket: timedelta, now: datetime
) -> list[dict[str, Any]]:
    """Deliveries made per bucket, by outcome, oldest first."""
    count = int((now - since) / bucket)
    buckets: list[dict[str, Any]] = [
        {"start": (since + i * bucket).isoformat(), "sent": 0, "failed": 0, "other": 0}
        for i in range(count)
    ]
    for row in rows:
        index = min(int((row.created_at - since) / bucket), count - 1)
        kind = row.status if row.status in ("sent", "failed") else "other"
        buckets[index][kind] += 1
    return buckets


NO_WEBHOOK = "not made: Relay received no webhook for this order"


def accuracy(
    session: Session,
    shop: Shop,
    destination: str,
    since: datetime,
    listed: ShopOrders | None = None,
) -> dict[str, Any]:
    """Orders in the period against purchases delivered to `destination`.

    The orders are Relay's purchases whose order was processed since
    `since`, and, when Shopify's own list could be read, the orders it
    lists that Relay never heard of. Every order not delivered is counted
    under a reason: its delivery's status and reason, that no delivery was
    made, or that no webhook came.
    """
    query = (
        select(EventRecord.order_id, EventRecord.event_id, Delivery)
        .outerjoin(
            Delivery,
            (Delivery.event_pk == EventRecord.id)
            & (Delivery.destination == destination),
        )
        .where(
            EventRecord.shop_id == shop.id,
            EventRecord.name == "purchase",
            EventRecord.occurred_at >= since,
        )
        .order_by(EventRecord.occurred_at, EventRecord.id)
    )
    known: set[str] = set()
    gaps: dict[str, list[str]] = defaultdict(list)
    for order_id, event_id, delivery in session.execute(query):
        known.add(order_id or event_id)
        if delivery is None or delivery.status != "sent":
            gaps[_gap_reason(delivery)].append(order_id or event_id)
    unheard = [order for order in (listed.ids if listed else ()) if order not in known]
    if unheard:
        gaps[NO_WEBHOOK] = unheard
    orders = len(known) + len(unheard)
    return {
        "orders": orders,
        "delivered": orders - sum(len(found) for found in gaps.values()),
        "gaps": [
            {"reason": reason, "count": len(found), "orders": found[:5]}
            for reason, found in sorted(gaps.items(), key=lambda i: -len(i[1]))
        ],
    }


def accuracy_report(
    session: Session,
    plugins: Plugins,
    shop: Shop,
    period: str,
    now: datetime,
    listed: ShopOrders | None,
) -> dict[str, Any]:
    """`accuracy` for each destination the shop has, over `period`."""
    since = now - PERIODS[period].span
    return {
        "period": period,
        "since": since.isoformat(),
        "shopify_orders": len(listed.ids) if listed else None,
        "shopify_complete": listed.complete if listed else None,
        "destinations": [
            {
                "name": name,
                "title": _title(plugins, name),
                **accuracy(session, shop, name, since, listed),
            }
            for name in sorted(set(_set_up(session, shop)))
        ],
    }


def _gap_reason(delivery: Delivery | None) -> str:
    if delivery is None:
        return "not sent: the destination was not set up or enabled then"
    if delivery.status == "skipped":
        return f"skipped: {skip_reason(delivery.reason)}"
    if delivery.status in ("queued", "retrying"):
        return f"{delivery.status}: not delivered yet"
    detail = delivery.reason or delivery.error or "no reason recorded"
    return f"{delivery.status}: {detail}"


def recent(
    session: Session,
    shop: Shop,
    limit: int,
    before: int | None = None,
    status: str | None = None,
) -> list[dict[str, Any]]:
    """The shop's latest deliveries, newest first, without their payloads;
    with `before`, those older than that delivery id; with `status`, only
    those in it."""
    query = (
        select(Delivery)
        .where(Delivery.shop_id == shop.id)
        .order_by(Delivery.id.desc())
        .limit(limit)
    )
    if before is not None:
        query = query.where(Delivery.id < before)
    if status is not None:
        query = query.where(Delivery.status == status)
    return [_delivery(row) for row in session.scalars(query)]


def one(session: Session, shop: Shop, delivery_id: int) -> dict[str, Any] | None:
    """One of the shop's deliveries with its payload as sent; None if not the shop's."""
    row = session.get(Delivery, delivery_id)
    if row is None or row.shop_id != shop.id:
        return None
    return {**_delivery(row), "payload": row.payload}


def _delivery(row: Delivery) -> dict[str, Any]:
    return {
        "id": row.id,
        "destination": row.destination,
        "event": row.event.name,
        "event_id": row.event.event_id,
        "order_id": row.event.order_id,
        "occurred_at": row.event.occurred_at.isoformat(),
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
        "status": row.status,
        "reason": row.reason,
        "http_status": row.http_status,
        "message": row.error or row.warning,
        "attempts": row.attempts,
        "test_mode": row.test_mode,
        "match_keys": list(row.match_keys or []),
    }


def health(
    session: Session, plugins: Plugins, shop: Shop, webhooks: dict[str, str]
) -> dict[str, Any]:
    """Each destination's state, and when each webhook topic last arrived."""
    rows = session.scalars(
        select(DestinationSetting)
        .where(DestinationSetting.shop_id == shop.id)
        .order_by(DestinationSetting.destination)
    ).all()
    return {
        "shop": {"domain": shop.domain, "installed": shop.installed},
        "destinations": [_destination_health(plugins, row) for row in rows],
        "webhooks": [
            {"topic": topic, "last_received": webhooks[topic]}
            for topic in sorted(webhooks)
        ],
    }


def _destination_health(plugins: Plugins, row: DestinationSetting) -> dict[str, Any]:
    if not row.enabled:
        state, reason = "disabled", None
    elif row.paused_reason:
        state, reason = "paused", row.paused_reason
    else:
        state, reason = "healthy", None
    return {
        "name": row.destination,
        "title": _title(plugins, row.destination),
        "state": state,
        "reason": reason,
        "since": row.paused_at.isoformat() if row.paused_at else None,
        "test_mode": row.test_mode,
    }


def note_webhook(
    redis: Any, shop: str, topic: str, when: datetime, keep_days: int
) -> None:
    """Remember that a `topic` webhook for `shop` arrived at `when`.

    Kept as long as the delivery log; shop/redact deletes it.
    """
    key = keys.webhook_last(shop)
    with redis.pipeline() as pipe:
        pipe.hset(key, topic, when.isoformat())
        pipe.expire(key, keep_days * 24 * 3600)
        pipe.execute()


def webhook_times(redis: Any, shop: str) -> dict[str, str]:
    """When each topic's last webhook was accepted for `shop`."""
    stored = redis.hgetall(keys.webhook_last(shop))
    return {_text(topic): _text(when) for topic, when in stored.items()}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _set_up(session: Session, shop: Shop) -> list[str]:
    query = select(DestinationSetting.destination).where(
        DestinationSetting.shop_id == shop.id
    )
    return list(session.scalars(query))


def _title(plugins: Plugins, name: str) -> str:
    loaded = plugins.destinations.get(name)
    return loaded.title if loaded else name
