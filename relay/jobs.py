"""RQ jobs. Each takes ids only: personal data stays in Redis keys with TTLs
and in the database, never in a job's arguments, result or description."""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any

from rq.job import Job

from relay import conflicts, deadletters, delivery, pipeline, retention, runtime
from relay.errors import ShopifyRefused
from relay.shopify import install

log = logging.getLogger(__name__)


def process_webhook(shop: str, topic: str, webhook_id: str) -> None:
    """Normalize a stored webhook body and queue its deliveries."""
    pipeline.process_webhook(runtime.current(), shop, topic, webhook_id)


def process_beacon(shop: str, client_id: str, event_id: str) -> None:
    """Fold a stored pixel beacon into its visitor's profile; make its event."""
    pipeline.process_beacon(runtime.current(), shop, client_id, event_id)


def set_up_shop(domain: str) -> None:
    """Create or update Relay's Web Pixel in a shop that just loaded the app.

    ShopifyUnavailable is left to RQ's retries. ShopifyRefused is not: no
    retry can mend a revoked token or a refused mutation; the merchant's next
    visit to the app queues the set-up again.
    """
    try:
        install.set_up_shop(runtime.current(), domain)
    except ShopifyRefused as error:
        log.warning("shop %s: set-up refused, not retried: %s", domain, error.reason)


def enforce_retention() -> None:
    """Delete data past its lifetime, and send deliveries a race left held
    behind a destination no longer paused; scheduled hourly by `relay cron`."""
    current = runtime.current()
    retention.enforce(current)
    deadletters.requeue_stranded(current)


def check_conflicts(shop: str, destination: str) -> None:
    """Check one shop's destination for a native integration sending too."""
    conflicts.check(runtime.current(), shop, destination)


def check_every_shop() -> None:
    """Queue a conflict check per installed shop and destination; daily."""
    conflicts.check_every_shop(runtime.current())


def deliver(delivery_id: int) -> None:
    """Send one delivery; RQ retries it while the platform is failing."""
    delivery.deliver(runtime.current(), delivery_id)


def deliver_failed(
    job: Job,
    connection: Any,
    kind: type[BaseException],
    error: BaseException,
    traceback: TracebackType,
) -> None:
    """RQ's failure callback for `deliver`: record a delivery that gave up.

    RQ calls it after every failed attempt; only the last one, with no retry
    left, marks the delivery failed, so the log never shows a delivery as
    queued that nothing will ever send.
    """
    if job.retries_left:
        return
    (delivery_id,) = job.args
    delivery.give_up(runtime.current(), delivery_id, error)
