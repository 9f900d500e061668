"""Deliveries that failed for good, and sending them again.

A delivery ends `failed` once the platform refused it or RQ spent its
retries. Its event stays in Redis for RELAY_EVENT_SECONDS (7 days, as long
as Pinterest takes events), so until then `relay retry` can queue it again,
with the same event id: the platform deduplicates a send that did land.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from rq.registry import FailedJobRegistry
from sqlalchemy import select

from relay import keys
from relay.models import Delivery, Shop
from relay.pipeline import enqueue_delivery
from relay.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Retried:
    queued: int
    expired: int  # the event is no longer stored: nothing left to send


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
            delivery.updated_at = runtime.clock.now()
            queued.append(delivery.id)

    failed_jobs = FailedJobRegistry(queue=runtime.queue)
    for delivery_id in queued:
        # The job that gave up keeps its id in the failed registry; the new
        # one takes the id over.
        failed_jobs.remove(keys.delivery_job(delivery_id), delete_job=True)
        enqueue_delivery(runtime, delivery_id)
    log.info(
        "retry: %d failed deliveries queued again, %d with their event expired",
        len(queued),
        expired,
    )
    return Retried(len(queued), expired)
