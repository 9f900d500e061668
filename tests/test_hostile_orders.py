"""Signed, valid JSON that no real store sends: accepted, then dropped or
cleaned by the job with a logged reason, never a crashed job."""

from __future__ import annotations

import http.client
import json
import logging
import multiprocessing
from collections.abc import Iterator
from typing import Any

import pytest
from rq.registry import ScheduledJobRegistry
from sqlalchemy import select

from relay import keys
from relay.intake import accept_webhook
from relay.models import Delivery
from relay.shopify.webhooks import sign
from tests.conftest import (
    SECRET,
    SHOP,
    configure_destination,
    fixture_bytes,
    fixture_headers,
    post_signed,
    work,
)

ORDER = json.loads(fixture_bytes("orders_create.json"))


def order(**changes: Any) -> dict[str, Any]:
    return {**ORDER, **changes}


HOSTILE = {
    "unclosed IPv6 landing URL": order(landing_site="http://[::1/?epik=abc"),
    "fullwidth netloc": order(landing_site="http://exa\uff03mple.com/?epik=1"),
    "year 1": order(processed_at="0001-01-01T00:00:00+01:00"),
    "year 9999": order(processed_at="9999-12-31T23:00:00-05:00"),
    "huge tax": order(
        taxes_included=True,
        subtotal_price_set={
            "presentment_money": {"amount": "1e999999999", "currency_code": "CAD"}
        },
    ),
    "lone surrogate id": order(id="\ud800"),
    "lone surrogate email": order(
        email="\udc00jane@example.com", contact_email=None, customer=None
    ),
    "NUL in id": order(id="61\x0023"),
    "300-character id": order(id="9" * 300),
    "65-digit customer id": order(customer={**ORDER["customer"], "id": int("9" * 65)}),
    "negative subtotal": order(
        subtotal_price_set={
            "presentment_money": {"amount": "-135", "currency_code": "CAD"}
        }
    ),
    "quantity 10**400": order(
        line_items=[{**ORDER["line_items"][0], "quantity": 10**400}]
    ),
    "cancelled_at an object": order(cancelled_at={"x": 1}),
    "currency not ISO": order(
        subtotal_price_set={
            "presentment_money": {"amount": "1", "currency_code": "dollars"}
        }
    ),
}


@pytest.mark.parametrize("payload", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_order_never_crashes_the_job(
    client, runtime, pinterest, connected_shop, payload
):
    assert post_signed(client, payload, "hostile-1").json == {"status": "queued"}

    work(runtime)

    assert runtime.queue.failed_job_registry.count == 0
    assert ScheduledJobRegistry(queue=runtime.queue).count == 0  # no retry pending
    assert runtime.redis.get(keys.inbox(SHOP, "hostile-1")) is None
    assert pinterest.schema_errors == []
    for event in pinterest.events:
        value = event.get("custom_data", {}).get("value")
        assert value is None or float(value) >= 0


def test_cart_token_that_is_only_a_key_is_dropped(client, runtime, connected_shop):
    cart = json.loads(fixture_bytes("carts_create.json"))
    cart["token"] = cart["id"] = "?key=abc"

    post_signed(client, cart, "cart-1", topic="carts/create")
    work(runtime)

    assert runtime.queue.failed_job_registry.count == 0
    assert list(runtime.redis.scan_iter(keys.cart(SHOP, "*"))) == []


def test_deep_nesting_the_worker_cannot_parse_is_dropped(runtime, connected_shop):
    # A web thread with a deeper stack may accept what a job cannot parse.
    body = b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    accept_webhook(
        runtime.queue,
        runtime.config,
        shop=SHOP,
        topic="orders/create",
        webhook_id="deep-1",
        body=body,
    )

    work(runtime)

    assert runtime.queue.failed_job_registry.count == 0
    assert runtime.redis.get(keys.inbox(SHOP, "deep-1")) is None


def test_values_from_the_payload_stay_out_of_refusal_log_lines(client, runtime, caplog):
    caplog.set_level(logging.INFO)
    injected = "Jane Doe jane@example.com +1 555 555 0100"

    response = client.post(
        "/webhooks",
        data=b"{}",
        headers={"X-Shopify-Shop-Domain": injected, "X-Shopify-Hmac-Sha256": "x"},
    )

    assert response.status_code == 401
    assert "jane@example.com" not in caplog.text
    assert "webhook from an unnamed shop refused: bad signature" in caplog.text


def test_bad_timestamp_is_dropped_without_echoing_it(
    client, runtime, connected_shop, process_log
):
    post_signed(client, order(processed_at="Jane Doe, 123 Example St"), "ts-1")
    work(runtime)

    assert "123 Example St" not in process_log()
    assert "dropped orders/create: payload timestamp is not ISO 8601" in process_log()


@pytest.mark.parametrize(
    "header, value",
    [
        ("X-Shopify-Topic", "orders/create extra"),
        ("X-Shopify-Topic", "orders"),
        ("X-Shopify-Webhook-Id", "id with spaces"),
        ("X-Shopify-Webhook-Id", "x" * 129),
    ],
)
def test_malformed_topic_or_webhook_id_is_400(client, runtime, header, value):
    body = fixture_bytes("orders_create.json")
    headers = {**fixture_headers("orders_create.json"), header: value}

    response = client.post("/webhooks", data=body, headers=headers)

    assert response.status_code == 400
    assert runtime.queue.count == 0


@pytest.mark.parametrize("extra", [1, 1024 * 1024])
def test_chunked_body_over_the_limit_is_413_not_401(live_server, runtime, extra):
    body = b"x" * (runtime.config.webhook_max_bytes + extra)
    headers = {
        **fixture_headers("orders_create.json"),
        "X-Shopify-Hmac-Sha256": sign(body, SECRET),
    }
    connection = http.client.HTTPConnection(*live_server, timeout=30)

    connection.request(
        "POST", "/webhooks", body=_chunks(body), headers=headers, encode_chunked=True
    )

    assert connection.getresponse().status == 413


def test_chunked_body_within_the_limit_is_accepted(live_server, runtime):
    body = fixture_bytes("orders_create.json")
    connection = http.client.HTTPConnection(*live_server, timeout=30)

    connection.request(
        "POST",
        "/webhooks",
        body=_chunks(body),
        headers=fixture_headers("orders_create.json"),
        encode_chunked=True,
    )

    assert connection.getresponse().status == 200


def _chunks(body: bytes) -> Iterator[bytes]:
    for start in range(0, len(body), 65536):
        yield body[start : start + 65536]


def test_redelivery_with_another_body_is_acknowledged_and_logged(
    client, runtime, caplog
):
    caplog.set_level(logging.INFO)
    post_signed(client, order(), "same-id")

    again = post_signed(client, order(note="changed"), "same-id")

    assert again.json == {"status": "duplicate"}
    assert "webhook same-id from example-shop.myshopify.com: redelivery" in caplog.text
    assert runtime.queue.count == 1


BROKEN_PLUGIN = """
from relay.destinations import Destination
from relay.hookspecs import hookimpl


class Broken(Destination):
    name = "broken"
    title = "Broken"

    def format_event(self, event, config):
        raise KeyError("a bug in the plugin")

    def request_body(self, batch):
        return []

    def send_batch(self, batch, config):
        return []


@hookimpl
def relay_register_destinations(register):
    register(Broken())
"""


def test_plugin_that_cannot_format_fails_the_delivery_once(
    tmp_path, monkeypatch, client, runtime
):
    from relay.plugins import Plugins

    (tmp_path / "brokendest.py").write_text(BROKEN_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    toml = tmp_path / "plugins.toml"
    toml.write_text('[plugins]\nmodules = ["brokendest"]\n')
    runtime.plugins = Plugins.load(toml)
    configure_destination(runtime, "broken", {})

    post_signed(client, order(), "broken-1")
    work(runtime)

    with runtime.db.session() as session:
        delivery = session.scalars(select(Delivery)).one()
        assert (delivery.status, delivery.reason) == (
            "failed",
            "destination could not format the event",
        )
    assert ScheduledJobRegistry(queue=runtime.queue).count == 0


def test_delivery_whose_last_retry_crashes_is_marked_failed(
    client, runtime, pinterest, connected_shop
):
    # A bug-like failure (not a platform error) after every retry was spent.
    post_signed(client, order(), "crash-1")
    work(runtime)  # delivered normally; now make its retry crash
    with runtime.db.session() as session:
        delivery = session.scalars(select(Delivery)).one()
        delivery.status = "retrying"
        delivery_id = delivery.id
    runtime.redis.delete(keys.event(delivery.event_pk))
    runtime.redis.set(keys.event(delivery.event_pk), "{not json")
    from relay.pipeline import enqueue_delivery

    enqueue_delivery(runtime, delivery_id)
    job = runtime.queue.jobs[0]
    job.retries_left = 0
    job.save()

    work(runtime)

    with runtime.db.session() as session:
        delivery = session.get(Delivery, delivery_id)
        assert (delivery.status, delivery.reason) == (
            "failed",
            "gave up after retrying: JSONDecodeError",
        )


def checkout(**changes: Any) -> dict[str, Any]:
    return {**json.loads(fixture_bytes("checkouts_create.json")), **changes}


def test_token_with_a_trailing_newline_is_not_a_token(client, runtime, connected_shop):
    post_signed(client, checkout(token="CAD\n"), "nl-1", topic="checkouts/create")
    work(runtime)

    with runtime.db.session() as session:
        assert session.scalars(select(Delivery)).all() == []
    assert runtime.queue.failed_job_registry.count == 0


def test_amounts_in_scientific_notation_are_sent_in_plain_notation(
    client, runtime, pinterest, connected_shop
):
    changed = order()
    changed["subtotal_price_set"] = {
        "presentment_money": {"amount": "5E+1", "currency_code": "CAD"}
    }
    line = {**ORDER["line_items"][0]}
    line["price_set"] = {
        "presentment_money": {"amount": "1e-7", "currency_code": "CAD"}
    }
    changed["line_items"] = [line]

    post_signed(client, changed, "sci-1")
    work(runtime)

    (event,) = pinterest.events
    assert event["custom_data"]["value"] == "50"
    assert event["custom_data"]["contents"][0]["item_price"] == "0.0000001"


def test_a_line_without_buyer_money_gets_no_price_rather_than_shop_money(
    client, runtime, pinterest, connected_shop
):
    changed = order()
    line = {**ORDER["line_items"][0], "price_set": {"shop_money": {"amount": "38.00"}}}
    changed["line_items"] = [line, ORDER["line_items"][1]]

    post_signed(client, changed, "mix-1")
    work(runtime)

    (event,) = pinterest.events
    assert event["custom_data"]["currency"] == "CAD"
    assert "item_price" not in event["custom_data"]["contents"][0]
    assert event["custom_data"]["contents"][1]["item_price"] == "32.40"


def test_included_tax_without_buyer_money_leaves_the_value_out(
    client, runtime, pinterest, connected_shop
):
    changed = order(taxes_included=True)
    line = {**ORDER["line_items"][0]}
    line["tax_lines"] = [
        {"price": "4.56", "price_set": {"shop_money": {"amount": "4.56"}}}
    ]
    changed["line_items"] = [line]

    post_signed(client, changed, "tax-1")
    work(runtime)

    (event,) = pinterest.events
    assert "value" not in event["custom_data"]


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({"test": "true"}, "test order"),
        ({"processed_at": "2026-07-14T18:21:32-04:00"}, "in the future"),
    ],
)
def test_doubtful_orders_are_skipped_with_a_reason(
    client, runtime, pinterest, connected_shop, changes, reason
):
    post_signed(client, order(**changes), "doubt-1")
    work(runtime)

    assert pinterest.requests == []
    with runtime.db.session() as session:
        delivery = session.scalars(select(Delivery)).one()
        assert (delivery.status, delivery.reason) == ("skipped", reason)


@pytest.mark.parametrize("payload", [order(cancelled_at=True), order(id="orders/777")])
def test_cancelled_or_idless_orders_make_no_purchase(
    client, runtime, connected_shop, payload
):
    post_signed(client, payload, "none-1")
    work(runtime)

    with runtime.db.session() as session:
        assert session.scalars(select(Delivery)).all() == []


def test_concurrent_workers_make_one_purchase_per_order_without_failing_jobs(
    client, runtime, pinterest, connected_shop
):
    # Shopify sends create, paid and updated for an order almost together;
    # three workers race to record the same purchase.
    for number in range(15):
        for topic in ("orders/create", "orders/paid", "orders/updated"):
            webhook_id = f"race-{number}-{topic.replace('/', '-')}"
            response = post_signed(client, order(id=7_000 + number), webhook_id, topic)
            assert response.json == {"status": "queued"}

    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=work, args=(runtime,)) for _ in range(3)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)

    assert [process.exitcode for process in workers] == [0, 0, 0]
    assert runtime.queue.failed_job_registry.count == 0
    assert ScheduledJobRegistry(queue=runtime.queue).count == 0
    assert sorted(int(e["event_id"]) for e in pinterest.events) == list(
        range(7000, 7015)
    )
