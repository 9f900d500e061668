"""Batches, retries by cause, and nothing lost: issue 6's failure cases.

Each case runs webhooks through the Flask app, real RQ workers and a fake
Pinterest told how to fail, and ends with every good event delivered exactly
once at the fake (by event id) and the delivery log telling what happened.
Waits are RQ's schedule: `run_due` moves what would be due `after` seconds
from now, instead of sleeping.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest
from rq.exceptions import AbandonedJobError
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from sqlalchemy import select

from relay import deadletters, intake_queue, jobs, keys, outbox
from relay.models import Delivery
from tests.conftest import configure_destination, fixture_bytes, post_signed, work
from tests.fake_pinterest import RESET, Scripted

ORDER = json.loads(fixture_bytes("orders_create.json"))
FIRST_ID = 6123456789012


def order_ids(count: int) -> list[str]:
    return [str(FIRST_ID + n) for n in range(count)]


def post_orders(client: Any, count: int, start: int = 0) -> list[str]:
    """Post `count` distinct orders; returns their ids (the event ids)."""
    ids = []
    for n in range(start, start + count):
        order_id = FIRST_ID + n
        response = post_signed(client, dict(ORDER, id=order_id), f"order-{order_id}")
        assert response.status_code == 200
        ids.append(str(order_id))
    return ids


def log(runtime: Any) -> list[tuple[str, str, str | None, int | None, str | None]]:
    """(event id, status, reason, HTTP status, Pinterest's message) per delivery."""
    with runtime.db.session() as session:
        rows = session.scalars(select(Delivery).order_by(Delivery.id)).all()
        return [
            (d.event.event_id, d.status, d.reason, d.http_status, d.error) for d in rows
        ]


def scheduled(runtime: Any) -> list[tuple[str, float]]:
    """Jobs in RQ's schedule, with how many seconds from now each is due."""
    registry = ScheduledJobRegistry(queue=runtime.queue)
    now = time.time()
    return [
        (job_id, registry.get_scheduled_time(job_id).timestamp() - now)
        for job_id in registry.get_job_ids()
    ]


def run_due(runtime: Any, after: float) -> int:
    """Queue the scheduled jobs due within `after` seconds, as RQ's scheduler
    would once that time has passed; returns how many."""
    registry = ScheduledJobRegistry(queue=runtime.queue)
    due = registry.get_jobs_to_schedule(int(time.time() + after))
    for job_id in due:
        registry.remove(job_id)
        runtime.queue.enqueue_job(Job.fetch(job_id, connection=runtime.redis))
    return len(due)


def sent_once(ids: list[str]) -> dict[str, int]:
    return {event_id: 1 for event_id in ids}


def test_events_share_requests_up_to_the_batch_size(
    client, runtime, pinterest, connected_shop
):
    runtime.config = runtime.config.with_changes(batch_size=2)
    ids = post_orders(client, 5)
    work(runtime)

    assert [len(r.body["data"]) for r in pinterest.requests] == [2, 2, 1]
    assert dict(pinterest.delivered) == sent_once(ids)
    assert log(runtime) == [(i, "sent", None, 200, None) for i in ids]
    assert outbox.waiting(runtime) == {}
    assert runtime.redis.zcard(keys.batches()) == 0


def test_a_batch_takes_the_platforms_maximum_by_default(runtime):
    pinterest = runtime.plugins.destinations["pinterest"]
    assert pinterest.batch_limit == 1000
    assert outbox._batch_limit(runtime, "pinterest") == 1000


def test_a_batch_waits_for_others_unless_it_is_full(
    client, runtime, pinterest, connected_shop
):
    runtime.config = runtime.config.with_changes(batch_wait_seconds=2, batch_size=3)
    post_orders(client, 2)
    work(runtime)  # normalizes both; their batch waits two seconds

    assert pinterest.requests == []
    ((job_id, due_in),) = scheduled(runtime)
    assert job_id.startswith("send-pinterest-") and 0 < due_in <= 2

    post_orders(client, 1, start=2)  # the third fills the batch: it goes now
    work(runtime)
    assert [len(r.body["data"]) for r in pinterest.requests] == [3]

    assert run_due(runtime, after=2) == 1
    work(runtime)  # the waiting flush finds the outbox empty
    assert len(pinterest.requests) == 1


def test_retry_intervals_back_off_with_jitter_within_the_window():
    for _ in range(50):
        intervals = outbox.retry_intervals(24 * 3600)
        steps = [min(30 * 2**n, 3600) for n in range(len(intervals))]
        assert all(step / 2 <= wait <= step for wait, step in zip(intervals, steps))
        assert sum(intervals) <= 24 * 3600
        assert sum(intervals) > 23 * 3600 - 3600  # the window is used
    assert outbox.retry_intervals(24 * 3600) != outbox.retry_intervals(24 * 3600)


def test_429_is_retried_no_sooner_than_retry_after(
    client, runtime, pinterest, connected_shop
):
    rate_limit = {"code": 8, "message": "Rate limit exceeded"}
    pinterest.script = [Scripted(429, rate_limit, {"Retry-After": "600"})]
    ids = post_orders(client, 2)
    work(runtime)

    assert log(runtime) == [
        (i, "retrying", "Pinterest rate limit", 429, "8: Rate limit exceeded")
        for i in ids
    ]
    ((_, due_in),) = scheduled(runtime)
    assert 598 < due_in <= 600  # not the first backoff step (15-30 s)
    assert run_due(runtime, after=590) == 0

    assert run_due(runtime, after=601) == 1
    work(runtime)

    assert dict(pinterest.delivered) == sent_once(ids)
    assert [r.status for r in pinterest.requests] == [429, 200]
    assert log(runtime) == [(i, "sent", None, 200, None) for i in ids]


def test_server_errors_then_recovery_deliver_each_event_once(
    client, runtime, pinterest, connected_shop
):
    down = {"code": 4197, "message": "endpoint has been ramped down"}
    pinterest.script = [Scripted(500, down), Scripted(503, down), Scripted(502, down)]
    ids = post_orders(client, 3)
    work(runtime)
    for _ in range(3):
        ((_, due_in),) = scheduled(runtime)
        run_due(runtime, after=due_in + 1)
        work(runtime)

    assert [r.status for r in pinterest.requests] == [500, 503, 502, 200]
    assert dict(pinterest.delivered) == sent_once(ids)
    with runtime.db.session() as session:
        attempts = session.scalars(select(Delivery.attempts)).all()
    assert attempts == [4, 4, 4]
    assert log(runtime) == [(i, "sent", None, 200, None) for i in ids]


def test_pinterest_down_for_an_hour_loses_nothing(
    client, runtime, pinterest, connected_shop, clock
):
    pinterest.forced = (503, {"code": 4197, "message": "down"})
    ids = []
    for minute in range(0, 60, 20):  # events keep coming during the outage
        ids += post_orders(client, 2, start=minute)
        work(runtime)
        clock.advance(timedelta(minutes=20))
        run_due(runtime, after=20 * 60)
        work(runtime)
    assert {status for _, status, *_ in log(runtime)} == {"retrying"}

    pinterest.forced = None
    run_due(runtime, after=3600)
    work(runtime)

    assert dict(pinterest.delivered) == sent_once(ids)
    assert {status for _, status, *_ in log(runtime)} == {"sent"}


def test_a_422_fails_only_the_events_it_names(
    client, runtime, pinterest, connected_shop
):
    bad = str(FIRST_ID + 1)
    message = "Invalid 'currency' parameter."
    pinterest.refused_ids = {bad: message}
    ids = post_orders(client, 3)
    work(runtime)

    assert [(len(r.body["data"]), r.status) for r in pinterest.requests] == [(3, 422)]
    assert dict(pinterest.delivered) == sent_once([ids[0], ids[2]])
    assert log(runtime) == [
        (ids[0], "sent", None, 422, None),
        (bad, "failed", None, 422, message),
        (ids[2], "sent", None, 422, None),
    ]
    assert scheduled(runtime) == []  # nothing left to retry


def test_a_400_is_narrowed_down_to_the_bad_event(
    client, runtime, pinterest, connected_shop
):
    bad = str(FIRST_ID + 2)
    pinterest.poison_ids = {bad: "Parameter 'event_source_url' is malformed."}
    ids = post_orders(client, 5)
    work(runtime)

    assert [(len(r.body["data"]), r.status) for r in pinterest.requests] == [
        (5, 400),
        (2, 200),
        (3, 400),
        (1, 400),
        (2, 200),
    ]
    assert dict(pinterest.delivered) == sent_once([i for i in ids if i != bad])
    message = (
        "4196: The request was invalid. Parameter 'event_source_url' is malformed."
    )
    assert log(runtime) == [
        (i, "sent", None, 200, None)
        if i != bad
        else (i, "failed", "Pinterest refused the request", 400, message)
        for i in ids
    ]


def test_a_connection_reset_mid_request_is_retried(
    client, runtime, pinterest, connected_shop
):
    pinterest.script = [RESET]
    ids = post_orders(client, 2)
    work(runtime)

    reason = "no answer from Pinterest at localhost (RemoteProtocolError)"
    assert log(runtime) == [(i, "retrying", reason, None, None) for i in ids]
    ((_, due_in),) = scheduled(runtime)
    run_due(runtime, after=due_in + 1)
    work(runtime)

    assert [r.status for r in pinterest.requests] == [0, 200]
    assert dict(pinterest.delivered) == sent_once(ids)


GAVE_UP_ON_503 = (
    "failed",
    "gave up after retrying: Pinterest server error",
    503,
    "4197: down",
)


def failing_past_the_window(client, runtime, pinterest, clock) -> str:
    """An order Pinterest answers 503 to, retried until the window (24 h)
    has passed; returns its event id."""
    pinterest.forced = (503, {"code": 4197, "message": "down"})
    (order_id,) = post_orders(client, 1)
    work(runtime)
    clock.advance(timedelta(hours=24, minutes=1))
    ((_, due_in),) = scheduled(runtime)
    run_due(runtime, after=due_in + 1)
    work(runtime)
    return order_id


def test_retries_stop_after_the_window_and_the_log_says_so(
    client, runtime, pinterest, connected_shop, clock
):
    order_id = failing_past_the_window(client, runtime, pinterest, clock)

    assert log(runtime) == [(order_id, *GAVE_UP_ON_503)]
    assert scheduled(runtime) == []  # nothing left to retry
    assert len(pinterest.requests) == 1  # given up without asking again


def test_a_batch_first_sent_after_the_window_fails_for_good_at_once(
    client, runtime, pinterest, connected_shop, clock, process_log
):
    # Its flush was delayed past the window (workers down a day): the one
    # attempt it gets fails, and there is no retry to schedule.
    runtime.config = runtime.config.with_changes(batch_wait_seconds=2)
    pinterest.forced = (503, {"code": 4197, "message": "down"})
    (order_id,) = post_orders(client, 1)
    work(runtime)
    clock.advance(timedelta(hours=25))
    assert run_due(runtime, after=3) == 1
    work(runtime)

    assert log(runtime) == [(order_id, *GAVE_UP_ON_503)]
    assert scheduled(runtime) == []
    assert len(pinterest.requests) == 1
    (given_up,) = [line for line in process_log().splitlines() if "good" in line]
    assert given_up == (
        f"pinterest batch for {connected_shop}: 1 event failed for good, "
        "retried for longer than RELAY_RETRY_WINDOW_SECONDS (86400 s): "
        "Pinterest server error"
    )


def test_relay_retry_gives_a_dead_letter_a_whole_new_window(
    client, runtime, pinterest, connected_shop, clock
):
    order_id = failing_past_the_window(client, runtime, pinterest, clock)
    assert log(runtime)[0][1] == "failed"

    # Sent again by hand while Pinterest is still down: retried, not failed.
    assert deadletters.retry_failed(runtime).queued == 1
    work(runtime)
    assert log(runtime) == [
        (order_id, "retrying", "Pinterest server error", 503, "4197: down")
    ]
    ((_, due_in),) = scheduled(runtime)

    pinterest.forced = None
    clock.advance(timedelta(hours=23))
    run_due(runtime, after=due_in + 1)
    work(runtime)
    assert log(runtime) == [(order_id, "sent", None, 200, None)]
    assert dict(pinterest.delivered) == sent_once([order_id])


def test_an_event_past_pinterests_age_limit_is_dropped_with_the_reason(
    client, runtime, pinterest, connected_shop, clock
):
    runtime.config = runtime.config.with_changes(retry_window_seconds=7 * 24 * 3600)
    pinterest.forced = (503, {"code": 4197, "message": "down"})
    (order_id,) = post_orders(client, 1)
    work(runtime)
    clock.advance(timedelta(days=7))
    ((_, due_in),) = scheduled(runtime)
    run_due(runtime, after=due_in + 1)
    work(runtime)

    assert log(runtime) == [(order_id, "skipped", "too old", 503, "4197: down")]
    assert len(pinterest.requests) == 1


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_hold_a_whole_batch_until_fixed(
    client, runtime, pinterest, connected_shop, status
):
    configure_destination(runtime, "pinterest", {"conversion_token": "pina_revoked"})
    if status == 403:
        configure_destination(
            runtime,
            "pinterest",
            {"conversion_token": pinterest.token, "ad_account_id": "1"},
        )
    ids = post_orders(client, 3)
    work(runtime)
    assert [r.status for r in pinterest.requests] == [status]
    assert {row[1] for row in log(runtime)} == {"held"}

    configure_destination(
        runtime,
        "pinterest",
        {"conversion_token": pinterest.token, "ad_account_id": pinterest.ad_account_id},
    )
    from relay.deadletters import resume_held

    assert resume_held(runtime, connected_shop, "pinterest") == 3
    work(runtime)

    assert dict(pinterest.delivered) == sent_once(ids)
    assert [r.status for r in pinterest.requests] == [status, 200]


def test_a_lost_flush_job_is_mended_by_recovery(
    client, runtime, pinterest, connected_shop
):
    runtime.config = runtime.config.with_changes(batch_wait_seconds=2)
    ids = post_orders(client, 2)
    work(runtime)
    # As if Redis had lost the scheduled job (and the marker had expired).
    ((job_id, _),) = scheduled(runtime)
    Job.fetch(job_id, connection=runtime.redis).delete()
    runtime.redis.delete(keys.outbox_flush("pinterest", connected_shop))

    runtime.config = runtime.config.with_changes(batch_wait_seconds=0)
    outbox.recover(runtime)
    work(runtime)

    assert dict(pinterest.delivered) == sent_once(ids)


def test_a_claimed_batch_whose_job_is_gone_goes_back_to_its_outbox(
    client, runtime, pinterest, connected_shop
):
    pinterest.forced = (503, {"code": 4197, "message": "down"})
    ids = post_orders(client, 2)
    work(runtime)
    ((job_id, _),) = scheduled(runtime)
    Job.fetch(job_id, connection=runtime.redis).delete()  # lost with its retry

    pinterest.forced = None
    assert outbox.recover(runtime) == 2
    work(runtime)

    assert dict(pinterest.delivered) == sent_once(ids)
    assert runtime.redis.exists(keys.batch(job_id)) == 0


def test_webhooks_are_normalized_many_to_a_job(
    client, runtime, pinterest, connected_shop
):
    ids = post_orders(client, 4)
    assert runtime.redis.llen(keys.intake()) == 4
    assert [job.func_name for job in runtime.queue.jobs] == ["relay.jobs.drain_intake"]

    work(runtime)

    assert runtime.redis.llen(keys.intake()) == 0
    assert [len(r.body["data"]) for r in pinterest.requests] == [4]
    assert dict(pinterest.delivered) == sent_once(ids)


def test_a_webhook_that_fails_in_a_batch_gets_a_job_of_its_own(
    client, runtime, pinterest, connected_shop
):
    post_signed(client, dict(ORDER, id=FIRST_ID), "order-1")
    post_signed(client, dict(ORDER, id=FIRST_ID + 1), "order-2")
    post_signed(client, dict(ORDER, id=FIRST_ID + 2), "order-3")
    # Something else wrote a list where the second body waits: reading it
    # fails with Redis's WRONGTYPE.
    inbox = keys.inbox(connected_shop, "order-2")
    body = runtime.redis.get(inbox)
    runtime.redis.delete(inbox)
    runtime.redis.rpush(inbox, "not a body")
    work(runtime)

    assert dict(pinterest.delivered) == sent_once(order_ids(3)[::2])
    ((job_id, _),) = scheduled(runtime)  # its own job, retried by RQ
    job = Job.fetch(job_id, connection=runtime.redis)
    assert (job.func_name, job.args) == (
        "relay.jobs.process_webhook",
        (connected_shop, "orders/create", "order-2"),
    )

    runtime.redis.delete(inbox)
    runtime.redis.set(inbox, body)
    run_due(runtime, after=11)
    work(runtime)
    assert dict(pinterest.delivered) == sent_once(order_ids(3))


def test_a_drain_job_that_gave_up_hands_each_item_a_job_of_its_own(
    client, runtime, pinterest, connected_shop
):
    ids = post_orders(client, 2)
    (drain,) = runtime.queue.jobs
    # As if the drain job had claimed its batch, then been killed each time
    # RQ ran it, until no retry was left.
    runtime.redis.eval(
        intake_queue._CLAIM, 2, keys.intake(), keys.batch(drain.id), 200, 600
    )
    runtime.queue.remove(drain)
    drain.retries_left = 0
    jobs.drain_failed(
        drain, runtime.redis, AbandonedJobError, AbandonedJobError(), None
    )

    assert sorted(job.func_name for job in runtime.queue.jobs) == [
        "relay.jobs.process_webhook",
        "relay.jobs.process_webhook",
    ]
    work(runtime)
    assert dict(pinterest.delivered) == sent_once(ids)
    assert runtime.redis.exists(keys.batch(drain.id)) == 0
