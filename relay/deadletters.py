"""Deliveries that failed for good or are held, and sending them again.

A destination whose platform refused its credentials is paused: its
deliveries are `held`, not dropped. `resume_held` lifts the pause once the
merchant has fixed the settings, and queues what was held; the hourly
retention job sends what a race left held behind a destination no longer
paused (`requeue_stranded`).

A delivery ends `failed` once the platform refused it or RQ spent its
retries. Its event stays in Redis for RELAY_EVENT_SECONDS (7 days, as long
as Pinterest takes events), so until then `relay retry` can queue it again,
with the same event id: the platform deduplicates a send that did land.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from relay import keys
from relay.models import Delivery, DestinationSetting, Shop
from relay.pipeline import enqueue_delivery
from relay.runtime import Runtime
from relay.shops import setting_row

log = logging.getLogger(__name__)


def resume_held(runtime: Runtime, shop: str, destination: str) -> int:
    """Lift a destination's pause and queue its held deliveries; how many.

    Nothing happens while the destination is disabled: its held events stay
    held until it is enabled again. A held delivery whose event expired
    meanwhile is marked failed, saying so.
    """
    now = runtime.clock.now()
    with runtime.db.session() as session:
        shop_row = session.scalars(select(Shop).where(Shop.domain == shop)).first()
        setting = (
            None if shop_row is None else setting_row(session, shop_row, destination)
        )
        if shop_row is None or setting is None or not setting.enabled:
            return 0
        if not shop_row.installed:
            return 0
        if setting.paused_reason is not None:
            log.info("shop %s: %s resumed", shop, destination)
            setting.paused_reason = None
            setting.paused_at = None
        held = session.scalars(
            select(Delivery).where(
                Delivery.shop_id == shop_row.id,
                Delivery.destination == destination,
                Delivery.status == "held",
            )
        ).all()
        ids = []
        for delivery in held:
            delivery.updated_at = now
            if runtime.redis.exists(keys.event(delivery.event_pk)):
                delivery.status = "queued"
                delivery.retry_since = now
                ids.append(delivery.id)
            else:
                delivery.status = "failed"
                delivery.reason = "event expired while the destination was paused"
    for delivery_id in ids:
        enqueue_delivery(runtime, delivery_id)
    return len(ids)


def requeue_stranded(runtime: Runtime) -> int:
    """Send deliveries held behind a destination that is no longer paused.

    A delivery marked held at the moment its destination resumed is missed
    by the resume; the hourly retention job calls this to mend that.
    """
    with runtime.db.session() as session:
        stranded = session.execute(
            select(Shop.domain, Delivery.destination)
            .join(Shop, Delivery.shop_id == Shop.id)
            .join(
                DestinationSetting,
                (DestinationSetting.shop_id == Delivery.shop_id)
                & (DestinationSetting.destination == Delivery.destination),
            )
            .where(
                Delivery.status == "held",
                DestinationSetting.paused_reason.is_(None),
            )
            .distinct()
        ).all()
    return sum(resume_held(runtime, shop, name) for shop, name in stranded)


@dataclass(frozen=True)
class Retried:
    queued: int
    expired: int  # the event is no longer stored: nothing left to send
    resumed: int = 0  # held by a paused destination, now queued


def retry_failed(
    runtime: Runtime,
    shop: str | None = None,
    destination: str | None = None,
    since: datetime | None = None,
) -> Retried:
    """Queue every failed delivery matching the filters again."""
    with runtime.db.session() as session:
        query = (
            select(Delivery)
            .join(Shop, Delivery.shop_id == Shop.id)
            .where(Delivery.status == "failed", Shop.installed.is_(True))
            .order_by(Delivery.id)
        )
        if shop:
            query = query.where(Shop.domain == shop)
        if destination:
            query = query.where(Delivery.destination == destination)
        if since:
            query = query.where(Delivery.created_at >= since)
        queued, expired = [], 0
        for delivery in session.scalars(query):
            if not runtime.redis.exists(keys.event(delivery.event_pk)):
                expired += 1
                continue
            delivery.status = "queued"
            delivery.reason = "sent again by hand"
            delivery.updated_at = delivery.retry_since = runtime.clock.now()
            queued.append(delivery.id)

        held_query = (
            select(Shop.domain, Delivery.destination)
            .join(Shop, Delivery.shop_id == Shop.id)
            .where(Delivery.status == "held", Shop.installed.is_(True))
            .distinct()
        )
        if shop:
            held_query = held_query.where(Shop.domain == shop)
        if destination:
            held_query = held_query.where(Delivery.destination == destination)
        paused = [tuple(row) for row in session.execute(held_query)]

    for delivery_id in queued:
        enqueue_delivery(runtime, delivery_id)
    # The operator asks to send again: a paused destination is resumed too.
    resumed = sum(resume_held(runtime, domain, name) for domain, name in paused)
    log.info(
        "retry: %d failed deliveries queued again, %d with their event expired, "
        "%d held deliveries resumed",
        len(queued),
        expired,
        resumed,
    )
    return Retried(len(queued), expired, resumed)
