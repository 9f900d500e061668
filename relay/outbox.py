"""Batching deliveries per shop and destination, with nothing held in memory.

A delivery ready to go is pushed onto its shop's outbox for the destination,
a Redis list. The first push schedules a flush job `RELAY_BATCH_WAIT_SECONDS`
later; a push that fills a batch queues one at once. A flush job moves up to
a batch of ids from the outbox onto its own batch list in one Lua call, then
sends them in one request:

    outbox:{destination}:{shop}  ──claim──▶  batch:{job id}  ──sent──▶  (deleted)

The batch list is named after the RQ job, so whatever runs that job again
sends the same batch: RQ's retry after a 429 or a 5xx, or RQ's recovery of
a job whose worker was killed (StartedJobRegistry.cleanup, run by every
worker's maintenance). Events therefore go out at least once; their event
ids are stable, and platforms deduplicate on them. `recover` mends the rest:
a batch whose job is gone, or an outbox whose flush was never queued.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from rq import Callback, Retry, get_current_job
from rq.job import Job, JobStatus

from relay import keys
from relay.runtime import Runtime

log = logging.getLogger(__name__)

FLUSH = "relay.jobs.flush_outbox"
FLUSH_FAILED = "relay.jobs.flush_failed"
# First retry after about 30 s, doubling up to an hour between attempts.
FIRST_RETRY_SECONDS = 30
LONGEST_RETRY_SECONDS = 3600

# Moves up to ARGV[1] ids from the outbox (KEYS[1]) to the batch (KEYS[2]),
# unless the batch already holds ids: a job run again sends the same batch.
# An outbox left empty leaves the set of outboxes (KEYS[3]) too.
_CLAIM = """
local held = redis.call('LRANGE', KEYS[2], 0, -1)
if #held > 0 then return held end
local ids = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #ids == 0 then return ids end
redis.call('LTRIM', KEYS[1], #ids, -1)
if redis.call('LLEN', KEYS[1]) == 0 then redis.call('SREM', KEYS[3], ARGV[3]) end
redis.call('RPUSH', KEYS[2], unpack(ids))
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[2]))
return ids
"""

# Puts a batch's ids back at the head of the outbox, where they came from.
_RETURN = """
local ids = redis.call('LRANGE', KEYS[2], 0, -1)
for i = #ids, 1, -1 do redis.call('LPUSH', KEYS[1], ids[i]) end
redis.call('DEL', KEYS[2])
return #ids
"""


def add(
    runtime: Runtime, shop: str, destination: str, delivery_ids: Sequence[int]
) -> None:
    """Hand deliveries to their destination's next batch."""
    if not delivery_ids:
        return
    outbox = keys.outbox(destination, shop)
    wait = runtime.config.batch_wait_seconds
    # One round trip: push, and claim the right to schedule the flush.
    with runtime.redis.pipeline() as pipe:
        pipe.rpush(outbox, *delivery_ids)
        pipe.sadd(keys.outboxes(), _name(shop, destination))
        _mark_flush(runtime, pipe, shop, destination, wait)
        length, _, marked = pipe.execute()

    limit = _batch_limit(runtime, destination)
    filled = length // limit > (length - len(delivery_ids)) // limit
    if filled:
        _queue_flush(runtime, shop, destination)
    elif marked:
        _queue_flush(runtime, shop, destination, wait)


def schedule_flush(
    runtime: Runtime, shop: str, destination: str, after: float | None = None
) -> None:
    """Queue a flush `after` seconds on (the batch wait), unless one is due.

    The marker is cleared by the flush job as it starts, so a push after
    that schedules the next one.
    """
    wait = runtime.config.batch_wait_seconds if after is None else after
    if _mark_flush(runtime, runtime.redis, shop, destination, wait):
        _queue_flush(runtime, shop, destination, wait)


def _mark_flush(
    runtime: Runtime, client: Any, shop: str, destination: str, wait: float
) -> Any:
    """Set the flush marker unless set: true (or queued in a pipeline) for
    the caller that must queue the flush."""
    # The marker outlives a flush that never ran (its job lost with a Redis
    # that kept nothing), so the outbox is never left without one for long.
    lifetime = int(wait) + runtime.config.job_timeout_seconds * 2
    return client.set(
        keys.outbox_flush(destination, shop), "1", nx=True, ex=max(lifetime, 1)
    )


def _queue_flush(
    runtime: Runtime, shop: str, destination: str, wait: float = 0
) -> None:
    config = runtime.config
    options: dict[str, Any] = dict(
        job_id=keys.batch_job(destination),
        description=f"send a {destination} batch",
        result_ttl=config.job_result_seconds,
        failure_ttl=config.job_failure_seconds,
        retry=Retry(
            max=len(intervals := retry_intervals(config.retry_window_seconds)),
            interval=intervals,
        ),
        on_failure=Callback(FLUSH_FAILED),
    )
    if wait > 0:
        runtime.queue.enqueue_in(
            timedelta(seconds=wait),
            FLUSH,
            shop,
            destination,
            job_timeout=config.job_timeout_seconds,
            **options,
        )
    else:
        runtime.queue.enqueue_call(
            FLUSH,
            args=(shop, destination),
            timeout=config.job_timeout_seconds,
            **options,
        )


def retry_intervals(window_seconds: int) -> list[int]:
    """Exponential backoff with jitter, adding up to at most the window.

    Each wait is drawn between half and all of its exponential step, so
    batches that failed together do not all come back at the same second.
    """
    intervals: list[int] = []
    step = FIRST_RETRY_SECONDS
    while True:
        wait = int(random.uniform(step / 2, step))
        if sum(intervals) + wait > window_seconds:
            return intervals or [max(window_seconds, 1)]
        intervals.append(wait)
        step = min(step * 2, LONGEST_RETRY_SECONDS)


def claim(runtime: Runtime, shop: str, destination: str) -> tuple[str, list[int]]:
    """The current job's batch: claimed now, or the one it claimed before.

    Returns the batch key and its delivery ids (empty when nothing waits).
    """
    job = get_current_job()
    batch = keys.batch(job.id if job is not None else _one_off_id())
    # Cleared before claiming: anything pushed from now on is either in
    # this batch or schedules a flush of its own.
    runtime.redis.delete(keys.outbox_flush(destination, shop))

    limit = _batch_limit(runtime, destination)
    lifetime = runtime.config.event_seconds
    raw = runtime.redis.eval(
        _CLAIM,
        3,
        keys.outbox(destination, shop),
        batch,
        keys.outboxes(),
        limit,
        lifetime,
        _name(shop, destination),
    )
    ids = [int(value) for value in raw]
    if ids:
        runtime.redis.zadd(
            keys.batches(),
            {_member(batch, shop, destination): runtime.clock.now().timestamp()},
        )
    if runtime.redis.llen(keys.outbox(destination, shop)):
        # More than a batch was waiting: the next one goes without waiting.
        schedule_flush(runtime, shop, destination, after=0)
    return batch, ids


def done(runtime: Runtime, batch: str, shop: str, destination: str) -> None:
    """Forget a batch every delivery of which has an outcome logged."""
    with runtime.redis.pipeline() as pipe:
        pipe.delete(batch)
        pipe.zrem(keys.batches(), _member(batch, shop, destination))
        pipe.execute()


def holds(runtime: Runtime, shop: str, destination: str, delivery_id: int) -> bool:
    """Whether a delivery waits in an outbox or a claimed batch."""
    if runtime.redis.lpos(keys.outbox(destination, shop), str(delivery_id)) is not None:
        return True
    for batch, batch_shop, batch_destination in _claimed(runtime):
        if (batch_shop, batch_destination) == (shop, destination):
            if runtime.redis.lpos(batch, str(delivery_id)) is not None:
                return True
    return False


def recover(runtime: Runtime) -> int:
    """Mend what a lost job left behind; returns how many deliveries moved.

    A batch whose job no longer exists (its worker died and RQ had no retry
    left, or Redis lost the job) goes back to the head of its outbox. An
    outbox holding deliveries with no flush scheduled gets one.
    """
    moved = 0
    for batch, shop, destination in _claimed(runtime):
        job_id = batch.removeprefix(keys.batch(""))
        job = Job.fetch_many([job_id], connection=runtime.redis)[0]
        if job is not None and job.get_status() not in (
            JobStatus.FINISHED,
            JobStatus.FAILED,
            JobStatus.CANCELED,
            JobStatus.STOPPED,
        ):
            continue  # waiting, running or retrying: its job sends it
        count = int(
            runtime.redis.eval(_RETURN, 2, keys.outbox(destination, shop), batch)
        )
        runtime.redis.zrem(keys.batches(), _member(batch, shop, destination))
        if count:
            runtime.redis.sadd(keys.outboxes(), _name(shop, destination))
            log.warning(
                "%s batch for %s: its job %s is gone; %d deliveries back in the outbox",
                destination,
                shop,
                job_id,
                count,
            )
        moved += count

    for name in runtime.redis.smembers(keys.outboxes()):
        shop, destination = json.loads(name)
        if runtime.redis.llen(keys.outbox(destination, shop)):
            schedule_flush(runtime, shop, destination)
        else:
            runtime.redis.srem(keys.outboxes(), name)
    return moved


def discard(runtime: Runtime, delivery_ids: Sequence[int]) -> None:
    """Take deleted deliveries out of every outbox and claimed batch, so a
    database that reuses ids cannot send a newer delivery by an old id."""
    if not delivery_ids:
        return
    lists = [batch for batch, _, _ in _claimed(runtime)]
    for name in runtime.redis.smembers(keys.outboxes()):
        shop, destination = json.loads(name)
        lists.append(keys.outbox(destination, shop))
    with runtime.redis.pipeline(transaction=False) as pipe:
        for key in lists:
            for delivery_id in delivery_ids:
                pipe.lrem(key, 0, str(delivery_id))
        pipe.execute()


def forget_shop(runtime: Runtime, shop: str) -> None:
    """Drop a deleted shop's claimed batches and its place among outboxes;
    the caller deletes its outbox keys."""
    for batch, batch_shop, destination in list(_claimed(runtime)):
        if batch_shop == shop:
            done(runtime, batch, shop, destination)
    for name in runtime.redis.smembers(keys.outboxes()):
        if json.loads(name)[0] == shop:
            runtime.redis.srem(keys.outboxes(), name)


def waiting(runtime: Runtime) -> dict[tuple[str, str], int]:
    """How many deliveries wait in each outbox, for operators."""
    counts = {}
    for name in runtime.redis.smembers(keys.outboxes()):
        shop, destination = json.loads(name)
        counts[(shop, destination)] = int(
            runtime.redis.llen(keys.outbox(destination, shop))
        )
    return counts


def _claimed(runtime: Runtime) -> Iterable[tuple[str, str, str]]:
    for member in runtime.redis.zrange(keys.batches(), 0, -1):
        batch, shop, destination = json.loads(member)
        yield batch, shop, destination


def _member(batch: str, shop: str, destination: str) -> str:
    return json.dumps([batch, shop, destination])


def _name(shop: str, destination: str) -> str:
    return json.dumps([shop, destination])


def _batch_limit(runtime: Runtime, destination: str) -> int:
    plugin = runtime.plugins.destinations.get(destination)
    limit = plugin.batch_limit if plugin is not None else 1
    return max(1, min(limit, runtime.config.batch_size or limit))


def _one_off_id() -> str:
    # Called outside a job (a command run by hand): a batch of its own.
    return f"one-off-{random.getrandbits(64):016x}"
