"""From a queued webhook to deliveries: what each topic does.

| topic                          | outcome                                         |
| orders/create, orders/paid,    | one purchase per order, whichever comes first   |
|   orders/updated               |   (Shopify does not guarantee their order)      |
| checkouts/create               | begin checkout, event id = checkout token       |
| carts/create, carts/update     | an add-to-cart per quantity increase (carts.py) |
| app/uninstalled                | the shop stops sending, its tokens are deleted  |
| customers/data_request,        | carried out by `relay.privacy`                  |
|   customers/redact, shop/redact|                                                 |

Pixel beacons (`process_beacon`) feed the visitor's profile and make the
events only the browser sees (relay.shopify.pixel_events). Events are stored
with their visitor identified but nothing filled in from the profile; each
delivery fills in the click id, IP, user agent and identity when it is sent,
with the visitor's consent as it stands then. A webhook event about a
browser action whose visitor is not known yet is held for
RELAY_BROWSER_WAIT_SECONDS, so the pixel's beacons can arrive.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any, NamedTuple

from rq.job import Job
from rq.registry import ScheduledJobRegistry
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from relay import carts, keys, outbox, privacy, visitors
from relay.errors import BadInput
from relay.events import ActionSource, Event, EventName
from relay.models import Delivery, EventRecord, Shop
from relay.runtime import Runtime
from relay.shopify import install, normalize, pixel_events
from relay.shops import active_destinations, ensure_shop, find_shop

log = logging.getLogger(__name__)

DELIVER = "relay.jobs.deliver"
# Far longer than a job takes from its commit to enqueueing the deliveries.
ORPHANED_AFTER = timedelta(minutes=2)


class Queued(NamedTuple):
    """A delivery to queue once the session commits, after `wait` seconds."""

    delivery_id: int
    wait: int = 0
    shop: str | None = None
    destination: str | None = None


Handler = Callable[[Runtime, Session, Shop, dict[str, Any], str], list[Queued]]


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
        queued = _handle(runtime, handler, shop, payload, topic)
    except BadInput as error:
        # Retrying cannot make an unusable payload usable.
        log.warning(
            "webhook %s from %s: dropped %s: %s", webhook_id, shop, topic, error
        )
        queued = []

    _enqueue_all(runtime, queued)
    runtime.redis.delete(inbox_key)


def process_beacon(runtime: Runtime, shop: str, client_id: str, event_id: str) -> None:
    """Fold one stored beacon into its visitor's profile and make its event."""
    beacon_key = keys.beacon(shop, client_id, event_id)
    raw = runtime.redis.get(beacon_key)
    if raw is None:
        log.warning("beacon %s from %s: no longer stored", event_id, shop)
        return

    with runtime.db.session() as session:
        shop_row = find_shop(session, shop)
        installed = shop_row is not None and shop_row.installed
    stored = _payload(raw)  # intake checked it; only a foreign writer fails here
    if stored is None or not installed:
        log.info(
            "beacon %s from %s: dropped (shop not installed or unreadable)",
            event_id,
            shop,
        )
        runtime.redis.delete(beacon_key)
        return

    envelope = stored["envelope"]
    received_at = visitors.parse_time(stored.get("received_at"))
    seen_at = visitors.observe(runtime, shop, envelope, stored.get("ip"), received_at)
    event = (
        None
        if seen_at is None
        else pixel_events.event_from_beacon(
            shop, envelope, visitors.usable_ip(stored.get("ip")), seen_at
        )
    )
    if event is not None:
        made = _pixel_event_handler(event)
        _enqueue_all(runtime, _handle(runtime, made, shop, {}, event.origin))
    elif envelope["event"]["name"] == "checkout_completed":
        _send_held_purchase(runtime, shop, envelope)
    runtime.redis.delete(beacon_key)


def _pixel_event_handler(event: Event) -> Handler:
    def record(
        runtime: Runtime, session: Session, shop: Shop, payload: Any, topic: str
    ) -> list[Queued]:
        return _record(runtime, session, shop, visitors.identify(runtime, event))

    return record


def _handle(
    runtime: Runtime, handler: Handler, shop: str, payload: dict[str, Any], topic: str
) -> list[Queued]:
    try:
        return _handle_once(runtime, handler, shop, payload, topic)
    except IntegrityError:
        # Shopify sends an order's create, paid and updated webhooks almost
        # together; another worker recorded the same event first. Looking
        # again finds it and adds nothing.
        log.info("%s for %s: event made concurrently, looking again", topic, shop)
        return _handle_once(runtime, handler, shop, payload, topic)


def _handle_once(
    runtime: Runtime, handler: Handler, shop: str, payload: dict[str, Any], topic: str
) -> list[Queued]:
    with runtime.db.session() as session:
        shop_row = ensure_shop(session, shop, runtime.clock.now())
        return handler(runtime, session, shop_row, payload, topic)


def _enqueue_all(runtime: Runtime, queued: list[Queued]) -> None:
    batches: dict[tuple[str, str], list[int]] = {}
    for delivery_id, wait, shop, destination in queued:
        if wait or shop is None or destination is None:
            enqueue_delivery(runtime, delivery_id, wait, shop, destination)
        else:
            batches.setdefault((shop, destination), []).append(delivery_id)
    for (shop, destination), delivery_ids in batches.items():
        outbox.add(runtime, shop, destination, delivery_ids)


def _payload(body: bytes) -> dict[str, Any] | None:
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        # The web process parsed it, on a deeper stack than a job may have.
        return None
    return payload if isinstance(payload, dict) else None


def _order(
    runtime: Runtime, session: Session, shop: Shop, payload: dict[str, Any], topic: str
) -> list[Queued]:
    if payload.get("cancelled_at") not in (None, "", False):
        log.info(
            "order %s for %s: cancelled, no purchase", payload.get("id"), shop.domain
        )
        return []
    return _event(runtime, session, shop, payload, topic)


def _event(
    runtime: Runtime, session: Session, shop: Shop, payload: dict[str, Any], topic: str
) -> list[Queued]:
    event = normalize.event_for_topic(shop.domain, topic, payload)
    return _record(runtime, session, shop, visitors.identify(runtime, event))


def _cart(
    runtime: Runtime, session: Session, shop: Shop, payload: dict[str, Any], topic: str
) -> list[Queued]:
    if not shop.installed:
        log.info("cart for %s: shop uninstalled, not kept", shop.domain)
        return []
    summary = normalize.cart_summary(payload)
    token = summary["token"]
    states = carts.remember(runtime.redis, shop.domain, summary)
    # Only the increases this state can have changed: into it, and out of it
    # into the next one (a late webhook lands between two known states).
    found = list(carts.increases(states, around=summary["updated_at"]))
    log.info(
        "cart for %s: %d state(s) known, %d increase(s) around this one",
        shop.domain,
        len(states),
        len(found),
    )
    queued: list[Queued] = []
    for increase in found:
        event = carts.add_to_cart(shop.domain, token, increase, topic)
        queued += _record(runtime, session, shop, visitors.identify(runtime, event))
    return queued


def _uninstalled(
    runtime: Runtime, session: Session, shop: Shop, payload: dict[str, Any], topic: str
) -> list[Queued]:
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


def _record(
    runtime: Runtime, session: Session, shop: Shop, event: Event
) -> list[Queued]:
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
        _revise_waiting(runtime, session, existing, event)
        return [Queued(d) for d in _orphaned_deliveries(runtime, session, existing)]

    now = runtime.clock.now()
    person = event.person
    record = EventRecord(
        shop_id=shop.id,
        name=event.name.value,
        event_id=event.event_id,
        order_id=event.commerce.order_id,
        customer_id=event.person.customer_id,
        client_id=event.person.client_id,
        **privacy.record_digests(person),
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
    wait = _browser_wait(runtime, event)
    log.info(
        "%s %s for %s: made from %s, %d destination(s)%s",
        event.name,
        event.event_id,
        shop.domain,
        event.origin,
        len(deliveries),
        f", waiting {wait} s for the visitor's browser" if wait and deliveries else "",
    )
    return [
        Queued(delivery.id, wait, shop.domain, delivery.destination)
        for delivery in deliveries
    ]


def _browser_wait(runtime: Runtime, event: Event) -> int:
    """How long a webhook's event waits before it is sent.

    A web action whose visitor is not known yet waits for the pixel's
    beacons, usually seconds behind. A cart's add-to-carts always wait: a
    late webhook with an earlier state of the cart may split an increase.
    """
    if not event.origin.startswith("webhook:"):
        return 0
    if event.action_source is not ActionSource.WEB:
        return 0
    if event.name is EventName.ADD_TO_CART or event.person.client_id is None:
        return runtime.config.browser_wait_seconds
    return 0


def _revise_waiting(
    runtime: Runtime, session: Session, record: EventRecord, event: Event
) -> None:
    """Correct an add-to-cart not sent yet that a late webhook split."""
    if event.name is not EventName.ADD_TO_CART:
        return
    stored = runtime.redis.get(keys.event(record.id))
    if stored is None:
        return
    revised = carts.revised(Event.from_json(stored), event)
    waiting = session.scalars(
        select(Delivery.id).where(
            Delivery.event_pk == record.id, Delivery.status == "queued"
        )
    ).first()
    if revised is not None and waiting is not None:
        runtime.redis.set(keys.event(record.id), revised.to_json(), keepttl=True)
        log.info(
            "%s %s for %s: quantity corrected by an earlier cart state",
            event.name,
            event.event_id,
            event.shop,
        )


def _send_held_purchase(runtime: Runtime, shop: str, envelope: dict[str, Any]) -> None:
    """The pixel saw the purchase: a purchase waiting for it goes now.

    Anyone may send a beacon naming any order id; the worst it does is end
    a purchase's wait early. Which visitor the purchase belongs to is
    still decided by the order's own checkout and cart tokens.
    """
    checkout = envelope["event"].get("data", {}).get("checkout")
    if not isinstance(checkout, dict) or not isinstance(checkout.get("order"), dict):
        return
    order_id = pixel_events.order_id(checkout["order"].get("id"))
    if order_id is None:
        return
    with runtime.db.session() as session:
        waiting = session.scalars(
            select(Delivery.id)
            .join(EventRecord, Delivery.event_pk == EventRecord.id)
            .join(Shop, EventRecord.shop_id == Shop.id)
            .where(
                Shop.domain == shop,
                EventRecord.name == EventName.PURCHASE.value,
                EventRecord.event_id == order_id,
                Delivery.status == "queued",
            )
        ).all()
    registry = ScheduledJobRegistry(queue=runtime.queue)
    for delivery_id in waiting:
        job_id = keys.delivery_job(delivery_id)
        # Only the process that takes the job off the schedule queues it.
        if registry.connection.zrem(registry.key, job_id):
            job = Job.fetch(job_id, connection=runtime.redis)
            runtime.queue.enqueue_job(job)
            log.info(
                "purchase %s for %s: the pixel saw it, sent without waiting more",
                order_id,
                shop,
            )


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
    """Deliveries of `record` still queued, long after creation, with neither
    a job nor a place in a batch.

    Only old ones: a job that made a delivery a moment ago may not have
    enqueued it yet, and enqueueing it here too would send it twice.
    """
    created_before = runtime.clock.now() - ORPHANED_AFTER
    query = select(Delivery.id, Delivery.destination).where(
        Delivery.event_pk == record.id,
        Delivery.status == "queued",
        Delivery.created_at < created_before,
    )
    shop = record.shop.domain
    return [
        delivery_id
        for delivery_id, destination in session.execute(query)
        if not Job.exists(keys.delivery_job(delivery_id), connection=runtime.redis)
        and not outbox.holds(runtime, shop, destination, delivery_id)
    ]


def enqueue_delivery(
    runtime: Runtime,
    delivery_id: int,
    wait: int = 0,
    shop: str | None = None,
    destination: str | None = None,
) -> None:
    """Hand a delivery to its next batch, now or, with `wait`, that many
    seconds on.

    A waiting delivery is a job in RQ's schedule, which the worker's
    scheduler moves to the queue when its time comes (or the pixel's
    checkout beacon, at once: `_send_held_purchase`).
    """
    if wait:
        config = runtime.config
        runtime.queue.enqueue_in(
            timedelta(seconds=wait),
            DELIVER,
            delivery_id,
            job_id=keys.delivery_job(delivery_id),
            description="deliver event",
            # enqueue_in passes unknown keywords to the job: its timeout is
            # spelled job_timeout there.
            job_timeout=config.job_timeout_seconds,
            result_ttl=config.job_result_seconds,
            failure_ttl=config.job_failure_seconds,
        )
        return
    if shop is None or destination is None:
        with runtime.db.session() as session:
            found = session.execute(
                select(Shop.domain, Delivery.destination)
                .join(Shop, Delivery.shop_id == Shop.id)
                .where(Delivery.id == delivery_id)
            ).one_or_none()
        if found is None:
            return  # deleted meanwhile (a privacy request)
        shop, destination = found
    outbox.add(runtime, shop, destination, [delivery_id])
