"""Accepting a webhook: remember the delivery, keep the body, queue it.

Queued means pushed onto the intake list that `drain_intake` jobs normalize
in batches (relay.intake_queue); privacy requests get a job each. The three
happen in one Redis transaction, so a delivery is either fully
accepted (and any redelivery is recognised) or not at all (and Shopify's
retry brings it again). The job receives ids only; the body, which carries
personal data, waits under a key with a TTL and is deleted once processed.
"""

from __future__ import annotations

import logging
from datetime import datetime
from enum import Enum

import redis
from rq import Queue, Retry

from relay import intake_queue, keys
from relay.config import Config

log = logging.getLogger(__name__)

PROCESS_WEBHOOK = "relay.jobs.process_webhook"
PRIVACY_TOPICS = frozenset(
    {"customers/data_request", "customers/redact", "shop/redact"}
)


class Acceptance(Enum):
    QUEUED = "queued"
    DUPLICATE = "duplicate"


def accept_webhook(
    queue: Queue,
    config: Config,
    *,
    shop: str,
    topic: str,
    webhook_id: str,
    body: bytes,
    arrived_at: datetime | None = None,
) -> Acceptance:
    """Queue one delivery unless it was accepted before.

    With `arrived_at`, notes it as the topic's last arrival for the
    dashboard's webhook health (a replay passes none). Raises
    redis.RedisError when Redis cannot be reached; the caller answers so
    that Shopify retries.
    """
    arrival = None
    if arrived_at is not None:
        arrival = intake_queue.Arrival(
            keys.webhook_last(shop),
            topic,
            arrived_at.isoformat(),
            config.delivery_log_days * 24 * 3600,
        )
    if topic not in PRIVACY_TOPICS:
        accepted = intake_queue.accept(
            queue,
            config,
            "webhook",
            keys.webhook_seen(shop, webhook_id),
            topic,
            config.webhook_dedupe_seconds,
            keys.inbox(shop, webhook_id),
            body,
            [shop, topic, webhook_id],
            arrival,
        )
        if not accepted:
            return Acceptance.DUPLICATE
        log.info("webhook %s from %s: queued %s", webhook_id, shop, topic)
        return Acceptance.QUEUED

    connection: redis.Redis = queue.connection
    seen_key = keys.webhook_seen(shop, webhook_id)
    with connection.pipeline() as pipe:
        try:
            pipe.watch(seen_key)
            if pipe.exists(seen_key):
                return Acceptance.DUPLICATE
            pipe.multi()
            if arrival is not None:
                pipe.hset(arrival.key, arrival.field, arrival.value)
                pipe.expire(arrival.key, arrival.seconds)
            pipe.set(seen_key, topic, ex=config.webhook_dedupe_seconds)
            pipe.set(keys.inbox(shop, webhook_id), body, ex=config.inbox_seconds)
            enqueue_processing(queue, config, shop, topic, webhook_id, pipeline=pipe)
            pipe.execute()
        except redis.WatchError:
            # A concurrent delivery of the same webhook won the race.
            return Acceptance.DUPLICATE

    log.info("webhook %s from %s: queued %s", webhook_id, shop, topic)
    return Acceptance.QUEUED


def enqueue_processing(
    queue: Queue,
    config: Config,
    shop: str,
    topic: str,
    webhook_id: str,
    *,
    pipeline: redis.client.Pipeline | None = None,
) -> None:
    """Queue `process_webhook` for a body already stored in the inbox."""
    queue.enqueue_call(
        PROCESS_WEBHOOK,
        args=(shop, topic, webhook_id),
        # A description without arguments keeps ids, not bodies, in RQ's logs.
        description=f"process {topic} webhook",
        timeout=config.job_timeout_seconds,
        # A finished privacy job is deleted at once: it names the shop.
        result_ttl=0 if topic in PRIVACY_TOPICS else config.job_result_seconds,
        failure_ttl=config.job_failure_seconds,
        retry=Retry(max=5, interval=[10, 60, 300, 1800, 3600]),
        pipeline=pipeline,
    )
