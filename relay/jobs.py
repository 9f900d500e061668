"""RQ jobs. Each takes ids only: personal data stays in Redis keys with TTLs
and in the database, never in a job's arguments, result or description."""

from __future__ import annotations

import logging
import math
from types import TracebackType
from typing import Any

from rq import get_current_job
from rq.job import Job

from relay import (
    conflicts,
    deadletters,
    delivery,
    intake_queue,
    keys,
    outbox,
    pipeline,
    retention,
    runtime,
)
from relay.errors import RetryableDelivery, ShopifyRefused
from relay.shopify import install

log = logging.getLogger(__name__)


def process_webhook(shop: str, topic: str, webhook_id: str) -> None:
    """Normalize a stored webhook body and queue its deliveries."""
    pipeline.process_webhook(runtime.current(), shop, topic, webhook_id)


def drain_intake() -> None:
    """Normalize a batch of accepted webhooks and beacons."""
    intake_queue.drain(runtime.current())


def drain_failed(
    job: Job,
    connection: Any,
    kind: type[BaseException],
    error: BaseException,
    traceback: TracebackType,
) -> None:
    """RQ's failure callback for `drain_intake`: once no retry is left, each
    item of its batch gets a job of its own instead of being forgotten."""
    if job.retries_left:
        return
    intake_queue.hand_off(runtime.current(), keys.batch(job.id))


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
    """Delete data past its lifetime, send deliveries a race left held behind
    a destination no longer paused, and batches whose job was lost;
    scheduled hourly by `relay cron`."""
    current = runtime.current()
    retention.enforce(current)
    deadletters.requeue_stranded(current)
    outbox.recover(current)


def check_conflicts(shop: str, destination: str) -> None:
    """Check one shop's destination for a native integration sending too."""
    conflicts.check(runtime.current(), shop, destination)


def check_every_shop() -> None:
    """Queue a conflict check per installed shop and destination; daily."""
    conflicts.check_every_shop(runtime.current())


def deliver(delivery_id: int) -> None:
    """Hand a delivery that waited (for the visitor's browser) to its batch."""
    pipeline.enqueue_delivery(runtime.current(), delivery_id)


def flush_outbox(shop: str, destination: str) -> None:
    """Send one batch of a shop's deliveries to a destination.

    Run again by RQ (a retry, or a worker's recovery of a job its killed
    worker abandoned), it sends the batch it claimed the first time.
    """
    current = runtime.current()
    batch, delivery_ids = outbox.claim(current, shop, destination)
    if not delivery_ids:
        outbox.done(current, batch, shop, destination)
        return
    try:
        delivery.send_batch(current, shop, destination, delivery_ids)
    except RetryableDelivery as error:
        _wait_at_least(error.retry_after, current.config.retry_window_seconds)
        raise
    outbox.done(current, batch, shop, destination)


def _wait_at_least(seconds: float | None, window: int) -> None:
    """Make RQ's next retry of this job wait at least `seconds` (a 429's
    Retry-After), in place of its planned backoff when that is shorter.

    No longer than the retry `window`: a platform asking for a year would
    otherwise park the batch past any chance of giving up on it.
    """
    job = get_current_job()
    if seconds is None or job is None or not job.retries_left:
        return
    if not math.isfinite(seconds) or seconds <= 0:
        return
    seconds = min(seconds, window)
    intervals = list(job.retry_intervals or [0])
    # The index RQ's Job.get_retry_interval will read for the next retry.
    index = max(len(intervals) - job.retries_left, 0)
    if index >= len(intervals):
        index = len(intervals) - 1
    intervals[index] = max(intervals[index], math.ceil(seconds))
    job.retry_intervals = intervals


def flush_failed(
    job: Job,
    connection: Any,
    kind: type[BaseException],
    error: BaseException,
    traceback: TracebackType,
) -> None:
    """RQ's failure callback for `flush_outbox`: record a batch that gave up.

    RQ calls it after every failed attempt, and for a job its killed worker
    abandoned; only the last one, with no retry left, marks the batch's
    deliveries failed, so the log never shows a delivery as queued that
    nothing will ever send.
    """
    if job.retries_left:
        return
    current = runtime.current()
    shop, destination = job.args
    batch = keys.batch(job.id)
    delivery_ids = [int(i) for i in current.redis.lrange(batch, 0, -1)]
    delivery.give_up(current, delivery_ids, error)
    outbox.done(current, batch, shop, destination)


def deliver_failed(
    job: Job,
    connection: Any,
    kind: type[BaseException],
    error: BaseException,
    traceback: TracebackType,
) -> None:
    """The failure callback of `deliver` jobs queued before batching, which
    sent one delivery each; kept so that those still scheduled end well."""
    if job.retries_left:
        return
    (delivery_id,) = job.args
    delivery.give_up(runtime.current(), [delivery_id], error)
