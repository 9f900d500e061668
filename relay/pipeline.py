"""From a queued webhook to deliveries: what each topic does.

| topic                          | outcome                                         |
| orders/create, orders/paid,    | one purchase per order, whichever comes first   |
|   orders/updated               |   (Shopify does not guarantee their order)      |
| checkouts/create               | begin checkout, event id = checkout token       |
| carts/create, carts/update     | the cart's lines kept for browser-side matching |
| app/uninstalled                | the shop stops sending, its tokens are deleted  |
| customers/data_request,        | carried out by `relay.privacy`                  |
|   customers/redact, shop/redact|                                                 |
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from rq import Callback, Queue, Retry
from rq.job import Job
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from relay import keys, privacy, visitors
from relay.errors import BadInput
from relay.events import Event
from relay.models import Delivery, EventRecord, Shop
from relay.runtime import Runtime
from relay.shopify import install, normalize
from relay.shops import active_destinations, ensure_shop

log = logging.getLogger(__name__)

DELIVER = "relay.jobs.deliver"
DELIVER_FAILED = "relay.jobs.deliver_failed"
CART_SECONDS = 30 * 24 * 3600
# Far longer than a job takes from its commit to enqueueing the deliveries.
ORPHANED_AFTER = timedelta(minutes=2)

Handler = Callable[[Runtime, Session, Shop, dict[str, Any], str], list[int]]


def process_webhook(runtime: Runtime, shop: str, topic: str, webhook_id: str) -> None:
    """Turn one stored webhook body into events and queue their deliveries."""
    inbox_key = keys.inbox(shop, webhook_id)
    body = runtime.redis.get(inbox_key)
    if body is None:
        log.warning(
            "webhook %s from %s: body no longer stored (expired or processed)",
            webhook_id,
            shop,
        )
        return

    payload = _payload(body)
    if topic in privacy.TOPICS and payload is not None:
        privacy.handle(runtime, shop, topic, webhook_id, payload)
        runtime.redis.delete(inbox_key)
        return

    handler = HANDLERS.get(topic)
    if handler is None or payload is None:
        log.warning("webhook %s from %s: nothing to do for %s", webhook_id, shop, topic)
        runtime.redis.delete(inbox_key)
        return

    try:
        delivery_ids = _handle(runtime, handler, shop, payload, topic)
    except IntegrityError:
        # Shopify sends an order's create, paid and updated webhooks almost
        # together; another worker recorded the same event first. Looking
        # again finds it and adds nothing.
        log.info(
            "webhook %s from %s: event made concurrently, looking again",
            webhook_id,
            shop,
        )
        delivery_ids = _handle(runtime, handler, shop, payload, topic)
    except BadInput as error:
        # Retrying cannot make an unusable payload usable.
        log.warning(
            "webhook %s from %s: dropped %s: %s", webhook_id, shop, topic, error
        )
        delivery_ids = []

    for delivery_id in delivery_ids:
        enqueue_delivery(runtime, delivery_id)
    runtime.redis.delete(inbox_key)


def _handle(
    runtime: Runtime, handler: Handler, shop: str, payload: dict[str, Any], topic: str
) -> list[int]:
    with runtime.db.session() as session:
        shop_row = ensure_shop(session, shop, runtime.clock.now())
        return handler(runtime, session, shop_row, payload, topic)


def _payload(body: bytes) -> dict[str, Any] | None:
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        # The web process parsed it, on a deeper stack than a job may have.
        return None
    return payload if isinstance(payload, dict) else None


def _order(
    runtime: Runtime, session: Session, shop: Shop, payload: dict[str, Any], topic: str
) -> list[int]:
    if payload.get("cancelled_at") not in (None, "", False):
        log.info(
            "order %s for %s: cancelled, no purchase", payload.get("id"), shop.domain
        )
        return []
    return _event(runtime, session, shop, payload, topic)


def _event(
    runtime: Runtime, session: Session, shop: Shop, payload: dict[str, Any], topic: str
) -> list[int]:
    event = normalize.event_for_topic(shop.domain, topic, payload)
    return _record(runtime, session, shop, visitors.resolve(runtime, event))


def _cart(
    runtime: Runtime, session: Session, shop: Shop, payload: dict[str, Any], topic: str
) -> list[int]:
    summary = normalize.cart_summary(payload)
    runtime.redis.set(
        keys.cart(shop.domain, summary["token"]), json.dumps(summary), ex=CART_SECONDS
    )
    log.info(
        "cart for %s: %d line(s) kept for matching with browser events",
        shop.domain,
        len(summary["lines"]),
    )
    return []


def _uninstalled(
    runtime: Runtime, session: Session, shop: Shop, payload: dict[str, Any], topic: str
) -> list[int]:
    install.uninstall(session, shop, runtime.clock.now())
    return []


HANDLERS: dict[str, Handler] = {
    "orders/create": _order,
    "orders/paid": _order,
    "orders/updated": _order,
    "checkouts/create": _event,
    "carts/create": _cart,
    "carts/update": _cart,
    "app/uninstalled": _uninstalled,
}


def _record(runtime: Runtime, session: Session, shop: Shop, event: Event) -> list[int]:
    """Record `event` once and create a delivery per active destination.

    Returns the deliveries to queue once the session commits. When the event
    was made before (an order's second webhook), only deliveries that lost
    their job are returned, so a crash between commit and enqueue heals.
    """
    if not shop.installed:
        log.info(
            "%s %s for %s: shop uninstalled, not sent",
            event.name,
            event.event_id,
            shop.domain,
        )
        return []

    existing = _find_event(session, shop, event)
    if existing is not None:
        log.info(
            "%s %s for %s: already made, %s adds nothing",
            event.name,
            event.event_id,
            shop.domain,
            event.origin,
        )
        return _orphaned_deliveries(runtime, session, existing)

    now = runtime.clock.now()
    person = event.person
    record = EventRecord(
        shop_id=shop.id,
        name=event.name.value,
        event_id=event.event_id,
        order_id=event.commerce.order_id,
        customer_id=event.person.customer_id,
        **privacy.record_digests(person.email, person.phone, person.country),
        origin=event.origin,
        test=event.test,
        occurred_at=event.occurred_at,
        created_at=now,
    )
    # A concurrent job inserting the same event between the check above and
    # this flush fails the unique constraint; process_webhook looks again.
    session.add(record)
    session.flush()

    runtime.redis.set(
        keys.event(record.id), event.to_json(), ex=runtime.config.event_seconds
    )
    deliveries = [
        Delivery(
            event_pk=record.id,
            shop_id=shop.id,
            destination=name,
            status="queued",
            attempts=0,
            test_mode=False,
            match_keys=[],
            created_at=now,
            updated_at=now,
        )
        for name in active_destinations(session, shop)
        if name in runtime.plugins.destinations
    ]
    session.add_all(deliveries)
    session.flush()
    log.info(
        "%s %s for %s: made from %s, %d destination(s)",
        event.name,
        event.event_id,
        shop.domain,
        event.origin,
        len(deliveries),
    )
    return [delivery.id for delivery in deliveries]


def _find_event(session: Session, shop: Shop, event: Event) -> EventRecord | None:
    query = select(EventRecord).where(
        EventRecord.shop_id == shop.id,
        EventRecord.name == event.name.value,
        EventRecord.event_id == event.event_id,
    )
    return session.scalars(query).one_or_none()


def _orphaned_deliveries(
    runtime: Runtime, session: Session, record: EventRecord
) -> list[int]:
    """Deliveries of `record` still queued with no job, long after creation.

    Only old ones: a job that made a delivery a moment ago may not have
    enqueued it yet, and enqueueing it here too would send it twice.
    """
    created_before = runtime.clock.now() - ORPHANED_AFTER
    query = select(Delivery.id).where(
        Delivery.event_pk == record.id,
        Delivery.status == "queued",
        Delivery.created_at < created_before,
    )
    return [
        delivery_id
        for delivery_id in session.scalars(query)
        if not Job.exists(keys.delivery_job(delivery_id), connection=runtime.redis)
    ]


def enqueue_delivery(
    runtime: Runtime, delivery_id: int, queue: Queue | None = None
) -> None:
    config = runtime.config
    (queue or runtime.queue).enqueue_call(
        DELIVER,
        args=(delivery_id,),
        job_id=keys.delivery_job(delivery_id),
        description="deliver event",
        timeout=config.job_timeout_seconds,
        result_ttl=config.job_result_seconds,
        failure_ttl=config.job_failure_seconds,
        retry=Retry(max=8, interval=[30, 60, 300, 900, 1800, 3600, 7200, 14400]),
        on_failure=Callback(DELIVER_FAILED),
    )
