"""How a delivery ends when Pinterest or the network misbehaves."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from rq.registry import ScheduledJobRegistry
from sqlalchemy import select

from relay import keys
from relay.errors import RetryableDelivery
from relay.models import Delivery
from tests.conftest import (
    SHOP,
    configure_destination,
    fixture_bytes,
    invoke,
    post_fixture,
    post_signed,
    work,
)


def the_delivery(runtime) -> Delivery:  # type: ignore[no-untyped-def]
    with runtime.db.session() as session:
        return session.scalars(select(Delivery)).one()


def test_pinterest_5xx_leaves_the_delivery_retrying_with_a_scheduled_retry(
    client, runtime, pinterest, connected_shop
):
    pinterest.forced = (503, {"code": 4197, "message": "endpoint has been ramped down"})

    post_fixture(client, "orders_create.json")
    work(runtime)

    delivery = the_delivery(runtime)
    assert (
        delivery.status,
        delivery.reason,
        delivery.http_status,
        delivery.attempts,
    ) == (
        "retrying",
        "Pinterest server error",
        503,
        1,
    )
    assert delivery.error == "4197: endpoint has been ramped down"
    # The batch stays claimed by its job, which RQ has scheduled to retry.
    (job_id,) = ScheduledJobRegistry(queue=runtime.queue).get_job_ids()
    assert job_id.startswith("send-pinterest-")
    assert runtime.redis.lrange(keys.batch(job_id), 0, -1) == [
        str(delivery.id).encode()
    ]


def test_network_failure_is_retried(client, runtime, pinterest, connected_shop):
    configure_destination(runtime, "pinterest", {"api_base": "http://127.0.0.1:1"})

    post_fixture(client, "orders_create.json")
    work(runtime)

    delivery = the_delivery(runtime)
    assert (delivery.status, delivery.reason) == (
        "retrying",
        "no answer from Pinterest at 127.0.0.1 (ConnectError)",
    )


def test_last_retry_marks_the_delivery_failed(
    client, runtime, pinterest, connected_shop
):
    pinterest.forced = (500, {"code": 1, "message": "boom"})
    post_fixture(client, "orders_create.json")
    work(runtime)  # first attempt fails; RQ schedules a retry
    registry = ScheduledJobRegistry(queue=runtime.queue)
    (job_id,) = registry.get_job_ids()
    job = runtime.queue.fetch_job(job_id)
    job.retries_left = 0  # as if every retry had been spent
    job.save()
    registry.remove(job)
    runtime.queue.enqueue_job(job)

    work(runtime)

    delivery = the_delivery(runtime)
    assert (delivery.status, delivery.reason, delivery.attempts) == (
        "failed",
        "gave up after retrying: Pinterest server error",
        2,
    )
    assert (delivery.http_status, delivery.error) == (500, "1: boom")
    assert registry.count == 0


@pytest.mark.parametrize(
    "status, code, message",
    [(401, 2, "Authentication failed."), (403, 29, "You are not permitted.")],
)
def test_refused_credentials_pause_the_destination_and_hold_its_events(
    client,
    runtime,
    pinterest,
    connected_shop,
    cli_env,
    redis_url,
    status,
    code,
    message,
):
    pinterest.forced = (status, {"code": code, "message": message})
    post_fixture(client, "orders_create.json")
    work(runtime)
    # While paused, the next event is held without asking Pinterest at all.
    order = json.loads(fixture_bytes("orders_create.json"))
    post_signed(client, dict(order, id=6123456789099), "second-order")
    work(runtime)

    reason = f"Pinterest refused the credentials (HTTP {status}): {code}: {message}"
    assert len(pinterest.requests) == 1
    with runtime.db.session() as session:
        held = session.scalars(select(Delivery).order_by(Delivery.id)).all()
        assert [(d.status, d.reason) for d in held] == [
            ("held", f"destination paused: {reason}"),
            ("held", f"destination paused: {reason}"),
        ]
    listed = relay(cli_env, redis_url, "destinations", "list", "--shop", SHOP)
    assert f"conflict policy send, PAUSED: {reason}" in listed

    # The merchant fixes the credentials: what was held is sent.
    pinterest.forced = None
    output = relay(
        cli_env,
        redis_url,
        "destinations",
        "set",
        "pinterest",
        "--shop",
        SHOP,
        "--set",
        f"conversion_token={pinterest.token}",
    )
    work(runtime)

    assert "2 held deliveries queued again" in output
    assert sorted(e["event_id"] for e in pinterest.events) == [
        "6123456789012",
        "6123456789099",
    ]
    listed = relay(cli_env, redis_url, "destinations", "list", "--shop", SHOP)
    assert "PAUSED" not in listed


def test_event_pinterest_finds_too_old_is_failed_with_its_message(
    client, runtime, pinterest, connected_shop, clock, cli_env
):
    # Relay thinks the order is 6.5 days old; Pinterest's clock is a day ahead.
    clock.advance(timedelta(days=6, hours=12))
    pinterest.clock = type(clock)(clock.now() + timedelta(days=1))

    post_fixture(client, "orders_create.json")
    work(runtime)

    delivery = the_delivery(runtime)
    assert (delivery.status, delivery.http_status) == ("failed", 422)
    assert delivery.error.startswith(
        "Invalid event_timestamp parameter. Given timestamp is in the past."
    )
    # Refused alone, it has no reason of Relay's: the summary counts it
    # under Pinterest's words.
    summary = invoke(cli_env, "deliveries", "--summary", "--since", "2000-01-01")
    assert summary.output == f"pinterest failed: 1 ({delivery.error})\n"


def test_retryable_error_carries_retry_after_from_a_429(
    client, runtime, pinterest, connected_shop
):
    import httpx
    from relay_pinterest.destination import _results

    response = httpx.Response(
        429, json={"code": 8, "message": "rate limit"}, headers={"Retry-After": "12"}
    )
    try:
        _results([], response)
    except RetryableDelivery as error:
        assert (error.http_status, error.retry_after, error.detail) == (
            429,
            12.0,
            "8: rate limit",
        )
    else:
        raise AssertionError("429 must be retryable")


def test_events_for_a_disabled_destination_are_not_sent(
    client, runtime, pinterest, connected_shop
):
    post_fixture(client, "orders_create.json")
    configure_destination(runtime, "pinterest", {}, enabled=False)
    work(runtime)

    assert pinterest.requests == []
    assert runtime.queue.failed_job_registry.count == 0


def test_healthz_reports_both_dependencies(client):
    response = client.get("/healthz")

    assert (response.status_code, response.json) == (
        200,
        {"status": "ok", "redis": "ok", "database": "ok"},
    )


def test_healthz_is_503_when_redis_is_down(runtime):
    from relay.redisconn import connect
    from webapp import create_app

    runtime.redis = connect("redis://127.0.0.1:1/0")
    response = create_app(runtime=runtime).test_client().get("/healthz")

    assert (response.status_code, response.json["redis"]) == (503, "unreachable")


# Dead letters


def failed_for_good(client, runtime, pinterest) -> Delivery:
    """A purchase whose request Pinterest refused as a whole: failed."""
    pinterest.forced = (400, {"code": 4196, "message": "The request was invalid."})
    post_fixture(client, "orders_create.json")
    work(runtime)
    pinterest.forced = None  # whatever was wrong is mended
    return the_delivery(runtime)


def relay(cli_env, redis_url, *args: str) -> str:
    result = invoke({**cli_env, "REDIS_URL": redis_url}, *args)
    assert result.exit_code == 0, result.output
    return result.output


def test_relay_retry_sends_failed_deliveries_again_with_their_event_ids(
    client, runtime, pinterest, connected_shop, cli_env, redis_url
):
    failed = failed_for_good(client, runtime, pinterest)
    assert (failed.status, failed.http_status) == ("failed", 400)
    listed = relay(cli_env, redis_url, "deliveries", "--failed")
    assert "purchase 6123456789012 failed http=400" in listed
    # Relay's reason, then Pinterest's own words.
    assert listed.endswith(
        "(Pinterest refused the request; 4196: The request was invalid.)\n"
    )

    output = relay(cli_env, redis_url, "retry", "--shop", "example-shop.myshopify.com")
    work(runtime)

    assert output == "1 failed delivery queued again\n"
    delivery = the_delivery(runtime)
    assert (delivery.status, delivery.http_status, delivery.attempts) == (
        "sent",
        200,
        2,
    )
    assert [e["event_id"] for e in pinterest.events] == ["6123456789012"]
    assert relay(cli_env, redis_url, "deliveries", "--failed") == (
        "no failed deliveries\n"
    )


def test_relay_retry_filters_by_destination_and_time(
    client, runtime, pinterest, connected_shop, cli_env, redis_url
):
    failed_for_good(client, runtime, pinterest)

    later = relay(cli_env, redis_url, "retry", "--since", "2026-07-15T00:00:00Z")
    env = {**cli_env, "REDIS_URL": redis_url}
    typo = invoke(env, "retry", "--destination", "pintrest")
    unknown = invoke(env, "retry", "--shop", "nope.myshopify.com")
    far = invoke(env, "retry", "--since", "9999-12-31T23:59:59-01:00")

    assert later == "0 failed deliveries queued again\n"
    assert (typo.exit_code, typo.output) == (1, "Error: no destination 'pintrest'\n")
    assert unknown.output == (
        "Error: no shop 'nope.myshopify.com' (see `relay shops list`)\n"
    )
    assert far.exit_code == 2
    assert "is outside the years 2000 to 2100" in far.output
    assert the_delivery(runtime).status == "failed"


def test_a_failed_delivery_whose_event_expired_is_not_queued(
    client, runtime, pinterest, connected_shop, cli_env, redis_url
):
    failed = failed_for_good(client, runtime, pinterest)
    runtime.redis.delete(f"relay:event:{failed.event_pk}")

    output = relay(cli_env, redis_url, "retry")

    assert output == "0 failed deliveries queued again; 1 not, their event expired\n"
    assert the_delivery(runtime).status == "failed"
