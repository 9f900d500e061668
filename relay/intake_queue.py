"""Normalizing in batches: many webhooks and beacons per RQ job.

A forking RQ worker pays several milliseconds per job before Relay does
anything, more than normalizing an order costs. So intake pushes what it
accepted (ids only: the bodies wait under their own keys) onto one Redis
list, in the same transaction that stores the body, and a `drain_intake` job
processes up to DRAIN_LIMIT of them at a time:

    intake  ──claim──▶  batch:{job id}  ──processed──▶  (deleted)

As in `relay.outbox`, the claimed ids stay in Redis under the job's name
until processed, so RQ's retry or its recovery of a killed worker's job
processes the same ones again; processing is idempotent (a processed body is
deleted, an event is recorded once). An item that fails is handed to a job
of its own, with RQ's retries, so one bad item never holds up the others.
Privacy requests keep a job each (relay.intake).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis
from rq import Callback, Queue, Retry, get_current_job

from relay import keys
from relay.config import Config

if TYPE_CHECKING:
    from relay.runtime import Runtime

log = logging.getLogger(__name__)

DRAIN = "relay.jobs.drain_intake"
DRAIN_FAILED = "relay.jobs.drain_failed"
# Small enough that a batch is done in well under a second.
DRAIN_LIMIT = 200

# Moves up to ARGV[1] items from the intake list (KEYS[1]) to the batch
# (KEYS[2]), unless the batch already holds some: a job run again processes
# the same ones.
_CLAIM = """
local held = redis.call('LRANGE', KEYS[2], 0, -1)
if #held > 0 then return held end
local items = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #items == 0 then return items end
redis.call('LTRIM', KEYS[1], #items, -1)
redis.call('RPUSH', KEYS[2], unpack(items))
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[2]))
return items
"""


# Intake in one round trip: unless the delivery was seen (KEYS[1]), mark it
# seen, keep its body (KEYS[2]), push its ids onto the intake list (KEYS[3])
# and claim the drain marker (KEYS[4]). Returns -1 for a repeat, 1 when the
# caller must queue a drain job, else 0. A fifth key, when given, is a hash
# noting when this kind of delivery last arrived (repeats included).
_ACCEPT = """
if #KEYS == 5 then
  redis.call('HSET', KEYS[5], ARGV[7], ARGV[8])
  redis.call('EXPIRE', KEYS[5], ARGV[9])
end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return -1 end
redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[4])
redis.call('RPUSH', KEYS[3], ARGV[5])
if redis.call('SET', KEYS[4], '1', 'NX', 'EX', ARGV[6]) then return 1 end
return 0
"""


@dataclass(frozen=True)
class Arrival:
    """Where to note that a delivery arrived: a hash field and its value,
    kept for `seconds`."""

    key: str
    field: str
    value: str
    seconds: int


def accept(
    queue: Queue,
    config: Config,
    kind: str,
    seen_key: str,
    seen_value: str,
    seen_seconds: int,
    body_key: str,
    body: bytes,
    ids: list[str],
    arrival: Arrival | None = None,
) -> bool:
    """Store a body and queue its ids at once, unless seen before; False for
    a repeat. Raises redis.RedisError when Redis cannot be reached."""
    keys_and_args: list[Any] = [
        seen_key,
        body_key,
        keys.intake(),
        keys.intake_drain(),
    ]
    args: list[Any] = [
        seen_value,
        seen_seconds,
        body,
        config.inbox_seconds,
        json.dumps([kind, *ids]),
        config.job_timeout_seconds,
    ]
    if arrival is not None:
        keys_and_args.append(arrival.key)
        args += [arrival.field, arrival.value, arrival.seconds]
    answer = queue.connection.eval(_ACCEPT, len(keys_and_args), *keys_and_args, *args)
    if answer == -1:
        return False
    if answer == 1:
        _enqueue_drain(queue, config)
    return True


def push(pipe: redis.client.Pipeline, kind: str, *ids: str) -> None:
    """Add an accepted webhook or beacon, inside the intake's transaction."""
    pipe.rpush(keys.intake(), json.dumps([kind, *ids]))


def schedule_drain(queue: Queue, config: Config) -> None:
    """Queue a drain job unless one is queued and has not started yet."""
    marker = keys.intake_drain()
    # Outlives a job that never ran, so intake is never left undrained long.
    if not queue.connection.set(marker, "1", nx=True, ex=config.job_timeout_seconds):
        return
    _enqueue_drain(queue, config)


def _enqueue_drain(queue: Queue, config: Config) -> None:
    queue.enqueue_call(
        DRAIN,
        job_id=keys.drain_job(),
        description="normalize a batch of webhooks and beacons",
        timeout=config.job_timeout_seconds,
        # The job names nobody, but has nothing worth keeping either.
        result_ttl=0,
        failure_ttl=config.job_failure_seconds,
        retry=Retry(max=5, interval=[10, 60, 300, 1800, 3600]),
        on_failure=Callback(DRAIN_FAILED),
    )


def claim(runtime: Runtime) -> tuple[str, list[list[str]]]:
    """The current job's batch: claimed now, or the one it claimed before."""
    job = get_current_job()
    batch = keys.batch(job.id if job is not None else keys.drain_job())
    runtime.redis.delete(keys.intake_drain())
    raw = runtime.redis.eval(
        _CLAIM, 2, keys.intake(), batch, DRAIN_LIMIT, runtime.config.inbox_seconds
    )
    if runtime.redis.llen(keys.intake()):
        schedule_drain(runtime.queue, runtime.config)
    return batch, [json.loads(item) for item in raw]


def drain(runtime: Runtime) -> int:
    """Process one batch; returns how many items it held."""
    from relay import pipeline  # it imports this module

    batch, items = claim(runtime)
    for item in items:
        kind, *ids = item
        try:
            if kind == "webhook":
                pipeline.process_webhook(runtime, *ids)
            else:
                pipeline.process_beacon(runtime, *ids)
        except Exception as error:
            # Logged with its traceback by the job of its own, if it fails
            # there too; here only which item went where.
            log.warning(
                "%s %s: failed in a batch (%s); retried in a job of its own",
                kind,
                ids[-1],
                type(error).__name__,
            )
            _job_of_its_own(runtime, item)
    runtime.redis.delete(batch)
    return len(items)


def hand_off(runtime: Runtime, batch: str) -> int:
    """Give each item of a batch whose drain job gave up (killed again and
    again, say by one item too big for memory) a job of its own, so the
    others are processed and only the culprit fails."""
    items = [json.loads(raw) for raw in runtime.redis.lrange(batch, 0, -1)]
    for item in items:
        _job_of_its_own(runtime, item)
    runtime.redis.delete(batch)
    if items:
        log.error(
            "a drain job gave up; its %d webhooks and beacons each have a job "
            "of their own now",
            len(items),
        )
    return len(items)


def _job_of_its_own(runtime: Runtime, item: list[str]) -> None:
    from relay import beacons, intake  # they import this module

    kind, *ids = item
    if kind == "webhook":
        intake.enqueue_processing(runtime.queue, runtime.config, *ids)
    else:
        beacons.enqueue_processing(runtime.queue, runtime.config, *ids)


def waiting(runtime: Runtime) -> int:
    return int(runtime.redis.llen(keys.intake()))


def recover(runtime: Runtime) -> None:
    """Queue a drain for items a lost job left waiting."""
    if waiting(runtime):
        schedule_drain(runtime.queue, runtime.config)
