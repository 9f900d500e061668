"""Shopify webhook → Flask → Redis → RQ worker → fake Pinterest, for real."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from relay import keys
from relay.models import Delivery, EventRecord, Shop
from relay.shopify.webhooks import sign
from tests.conftest import (
    FIXTURES,
    SECRET,
    SHOP,
    connect_pinterest,
    fixture_bytes,
    fixture_headers,
    post_fixture,
    work,
)

EPIK = "dj0yJnU9RkFLRV9FUElLX0ZPUl9URVNUUyZwPTEmbj1leGFtcGxlJnQ9QUFBQUFBQUFBQUFB"
USER_AGENT = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
ORDER_ID = "6123456789012"
CHECKOUT_TOKEN = "7c1f2e3d4b5a69788796a5b4c3d2e1f0"

# The fixture story in the order Shopify would deliver it.
SCENARIO = [
    ("carts_create.json", "queued"),
    ("carts_update.json", "queued"),
    ("checkouts_create.json", "queued"),
    ("orders_create.json", "queued"),
    ("orders_paid.json", "queued"),
]


def digest(text: str) -> list[str]:
    return [hashlib.sha256(text.encode()).hexdigest()]


EXPECTED_PURCHASE = {
    "event_name": "checkout",
    "action_source": "web",
    "event_time": int(
        datetime(2026, 7, 14, 14, 21, 32, tzinfo=timezone.utc).timestamp()
    ),
    "event_id": ORDER_ID,
    "user_data": {
        "em": digest("jane@example.com"),
        "ph": digest("15555550100"),
        "fn": digest("jane"),
        "ln": digest("doe"),
        "ct": digest("toronto"),
        "st": digest("on"),
        "zp": digest("x0x0x0"),
        "country": digest("ca"),
        "external_id": digest("7712345678901"),
        "click_id": EPIK,
        "client_ip_address": "203.0.113.42",
        "client_user_agent": USER_AGENT,
    },
    "custom_data": {
        "currency": "CAD",
        "value": "135.00",
        "content_ids": ["44012345678901", "44012345678902"],
        "contents": [
            {
                "id": "44012345678901",
                "quantity": 2,
                "item_price": "51.30",
                "item_name": "Linen Apron",
                "item_brand": "Example Goods Co.",
            },
            {
                "id": "44012345678902",
                "quantity": 1,
                "item_price": "32.40",
                "item_name": "Ceramic Mug",
                "item_brand": "Example Goods Co.",
            },
        ],
        "num_items": 3,
        "order_id": ORDER_ID,
    },
}

EXPECTED_BEGIN_CHECKOUT = {
    "event_name": "initiate_checkout",
    "action_source": "web",
    "event_time": int(
        datetime(2026, 7, 14, 14, 19, 48, tzinfo=timezone.utc).timestamp()
    ),
    "event_id": CHECKOUT_TOKEN,
    "user_data": {
        "em": digest("jane@example.com"),
        "ph": digest("15555550100"),
        "fn": digest("jane"),
        "ln": digest("doe"),
        "ct": digest("toronto"),
        "st": digest("on"),
        "zp": digest("x0x0x0"),
        "country": digest("ca"),
        "external_id": digest("7712345678901"),
        "click_id": EPIK,
    },
    "custom_data": {
        "currency": "USD",
        "value": "100.00",
        "content_ids": ["44012345678901", "44012345678902"],
        "contents": [
            {
                "id": "44012345678901",
                "quantity": 2,
                "item_price": "38.00",
                "item_name": "Linen Apron",
                "item_brand": "Example Goods Co.",
            },
            {
                "id": "44012345678902",
                "quantity": 1,
                "item_price": "24.00",
                "item_name": "Ceramic Mug",
                "item_brand": "Example Goods Co.",
            },
        ],
        "num_items": 3,
    },
}


def test_fixture_story_reaches_pinterest_once_per_action(
    client, runtime, pinterest, connected_shop
):
    for name, expected in SCENARIO:
        response = post_fixture(client, name)
        assert (response.status_code, response.json) == (200, {"status": expected}), (
            name
        )

    work(runtime)

    assert pinterest.schema_errors == []
    # Both events share one batch, hence one request.
    assert [(r.ad_account_id, r.test, r.status) for r in pinterest.requests] == [
        ("549755885175", False, 200),
    ]
    assert pinterest.events == [EXPECTED_BEGIN_CHECKOUT, EXPECTED_PURCHASE]


def test_delivery_log_records_outcome_with_personal_data_masked(
    client, runtime, pinterest, connected_shop
):
    post_fixture(client, "orders_create.json")
    work(runtime)

    with runtime.db.session() as session:
        delivery = session.scalars(select(Delivery)).one()
        assert (delivery.destination, delivery.status, delivery.attempts) == (
            "pinterest",
            "sent",
            1,
        )
        assert delivery.http_status == 200
        assert delivery.event.order_id == ORDER_ID
        assert delivery.event.customer_id == "7712345678901"
        assert delivery.match_keys == [
            "click_id",
            "client_ip_address",
            "client_user_agent",
            "country",
            "ct",
            "em",
            "external_id",
            "fn",
            "ln",
            "ph",
            "st",
            "zp",
        ]
        user_data = delivery.payload["user_data"]
        assert user_data["client_ip_address"] == "[masked]"
        assert user_data["client_user_agent"] == "[masked]"
        assert user_data["click_id"] == "[masked]"
        assert user_data["em"] == digest("jane@example.com")
        logged = json.dumps(delivery.payload)
    for raw in ("jane@example.com", "203.0.113.42", EPIK, "Jane", "Toronto"):
        assert raw not in logged


@pytest.mark.parametrize(
    "first, second",
    [
        ("orders_create.json", "orders_paid.json"),
        ("orders_paid.json", "orders_create.json"),
    ],
)
def test_an_order_makes_one_purchase_whichever_webhook_comes_first(
    client, runtime, pinterest, connected_shop, first, second
):
    post_fixture(client, first)
    work(runtime)
    post_fixture(client, second)
    work(runtime)

    assert [event["event_id"] for event in pinterest.events] == [ORDER_ID]
    with runtime.db.session() as session:
        origins = session.scalars(select(EventRecord.origin)).all()
    assert origins == ["webhook:" + fixture_headers(first)["X-Shopify-Topic"]]


def test_orders_updated_makes_a_purchase_only_when_none_exists(
    client, runtime, pinterest, connected_shop
):
    body = fixture_bytes("orders_paid.json")
    updated = {
        **fixture_headers("orders_paid.json"),
        "X-Shopify-Topic": "orders/updated",
        "X-Shopify-Webhook-Id": "e7c1c7a2-0000-4000-8000-000000000001",
    }
    assert client.post("/webhooks", data=body, headers=updated).status_code == 200
    work(runtime)
    post_fixture(client, "orders_create.json")
    work(runtime)

    assert [event["event_id"] for event in pinterest.events] == [ORDER_ID]


def test_redelivered_webhook_is_acknowledged_and_not_queued_twice(
    client, runtime, pinterest, connected_shop
):
    first = post_fixture(client, "orders_create.json")
    again = post_fixture(client, "orders_create.json")

    assert (first.status_code, first.json) == (200, {"status": "queued"})
    assert (again.status_code, again.json) == (200, {"status": "duplicate"})
    assert runtime.queue.count == 1
    ttl = runtime.redis.ttl(
        keys.webhook_seen(SHOP, "ebaae1b5-6632-54cb-877c-a3154dc14bf9")
    )
    assert 4 * 3600 < ttl <= 24 * 3600


def test_job_arguments_carry_ids_only_and_body_is_deleted_after_processing(
    client, runtime, pinterest, connected_shop, process_log
):
    post_fixture(client, "orders_create.json")
    # The webhook waits on the intake list by its ids; a drain job with no
    # arguments normalizes it, with others accepted meanwhile.
    assert runtime.redis.lrange(keys.intake(), 0, -1) == [
        json.dumps(
            ["webhook", SHOP, "orders/create", "ebaae1b5-6632-54cb-877c-a3154dc14bf9"]
        ).encode()
    ]
    (job,) = runtime.queue.jobs
    assert (job.func_name, job.args) == ("relay.jobs.drain_intake", ())
    assert job.failure_ttl == runtime.config.job_failure_seconds

    work(runtime)

    inbox = keys.inbox(SHOP, "ebaae1b5-6632-54cb-877c-a3154dc14bf9")
    assert runtime.redis.get(inbox) is None
    logged = process_log()
    # The work horses did log (so this checks their lines, not silence)...
    assert "purchase 6123456789012 for example-shop.myshopify.com: made" in logged
    assert "pinterest POST ad account 549755885175: 1 events" in logged
    # ...and no personal data, at any level.
    for raw in ("jane@example.com", "5555550100", "203.0.113.42", "Jane", "Doe"):
        assert raw not in logged
    assert "Toronto" not in logged
    # RQ's own lines name jobs by id, not by their call and arguments.
    assert "drain_intake(" not in logged
    assert "flush_outbox(" not in logged


def test_test_order_never_reaches_a_live_destination(
    client, runtime, pinterest, connected_shop
):
    order = json.loads(fixture_bytes("orders_create.json"))
    order["test"] = True
    body = json.dumps(order).encode()
    headers = {
        **fixture_headers("orders_create.json"),
        "X-Shopify-Hmac-Sha256": sign(body, SECRET),
    }

    assert client.post("/webhooks", data=body, headers=headers).status_code == 200
    work(runtime)

    assert pinterest.requests == []
    with runtime.db.session() as session:
        delivery = session.scalars(select(Delivery)).one()
        assert (delivery.status, delivery.reason) == ("skipped", "test order")


def test_test_order_goes_to_a_destination_in_test_mode(client, runtime, pinterest):
    connect_pinterest(runtime, pinterest, SHOP, test_mode=True)
    order = json.loads(fixture_bytes("orders_create.json"))
    order["test"] = True
    body = json.dumps(order).encode()
    headers = {
        **fixture_headers("orders_create.json"),
        "X-Shopify-Hmac-Sha256": sign(body, SECRET),
    }

    client.post("/webhooks", data=body, headers=headers)
    work(runtime)

    assert [(r.test, r.status) for r in pinterest.requests] == [(True, 200)]


def test_uninstalled_shop_stops_sending(client, runtime, pinterest, connected_shop):
    assert post_fixture(client, "app_uninstalled.json").json == {"status": "queued"}
    work(runtime)
    post_fixture(client, "orders_create.json")
    work(runtime)

    assert pinterest.requests == []
    with runtime.db.session() as session:
        shop = session.scalars(select(Shop)).one()
        assert (shop.installed, shop.uninstalled_at) == (False, runtime.clock.now())
        assert session.scalars(select(EventRecord)).all() == []


def test_events_older_than_seven_days_are_skipped_not_sent(
    client, runtime, pinterest, connected_shop, clock
):
    clock.advance(timedelta(days=8))
    post_fixture(client, "orders_create.json")
    work(runtime)

    assert pinterest.requests == []
    with runtime.db.session() as session:
        delivery = session.scalars(select(Delivery)).one()
        assert (delivery.status, delivery.reason) == ("skipped", "too old")


def test_cart_webhooks_with_no_visitor_make_add_to_carts_skipped_for_no_match_keys(
    client, runtime, pinterest, connected_shop
):
    post_fixture(client, "carts_create.json")
    post_fixture(client, "carts_update.json")
    work(runtime)

    # A cart webhook names no one; without the pixel's visitor there is
    # nothing Pinterest could match.
    assert pinterest.requests == []
    with runtime.db.session() as session:
        rows = session.execute(
            select(EventRecord.event_id, Delivery.status, Delivery.reason)
            .join(Delivery, Delivery.event_pk == EventRecord.id)
            .order_by(EventRecord.event_id)
        ).all()
    cart = "Z2NwLXVzLWVhc3QxOjAxSlpYNEVYQU1QTEVDQVJUMDAwMDAwMDAx"
    assert [tuple(row) for row in rows] == [
        (f"{cart}:44012345678901:1", "skipped", "no match keys"),
        (f"{cart}:44012345678901:2", "skipped", "no match keys"),
        (f"{cart}:44012345678902:1", "skipped", "no match keys"),
    ]
    stored = json.loads(runtime.redis.get(keys.cart(SHOP, cart)))
    assert [state["updated_at"] for state in stored["states"]] == [
        "2026-07-14T14:12:40.118Z",
        "2026-07-14T14:15:02.611Z",
    ]
    assert stored["states"][1]["lines"] == [
        {
            "variant_id": "44012345678901",
            "product_id": "8012345678901",
            "quantity": 2,
            "price": "51.30",
            "currency": "CAD",
        },
        {
            "variant_id": "44012345678902",
            "product_id": "8012345678902",
            "quantity": 1,
            "price": "32.40",
            "currency": "CAD",
        },
    ]


EXPECTED_INTAKE = {
    "app_uninstalled.json": "queued",
    "carts_create.json": "queued",
    "carts_update.json": "queued",
    "checkouts_create.json": "queued",
    "customers_data_request.json": "queued",
    "customers_redact.json": "queued",
    "orders_create.json": "queued",
    "orders_create_taxes_included.json": "queued",
    "orders_paid.json": "queued",
    "shop_redact.json": "queued",
}


def test_every_webhook_fixture_is_accepted_with_its_real_signature(client):
    headers = json.loads((FIXTURES / "headers.json").read_text())["webhooks"]
    assert sorted(headers) == sorted(EXPECTED_INTAKE)

    answers = {name: post_fixture(client, name) for name in sorted(headers)}

    assert {name: (r.status_code, r.json["status"]) for name, r in answers.items()} == {
        name: (200, status) for name, status in EXPECTED_INTAKE.items()
    }


def test_tax_inclusive_order_reaches_pinterest_without_the_included_tax(
    client, runtime, pinterest, connected_shop
):
    post_fixture(client, "orders_create_taxes_included.json")
    work(runtime)

    (event,) = pinterest.events
    assert (event["custom_data"]["currency"], event["custom_data"]["value"]) == (
        "EUR",
        "92.00",
    )


@pytest.mark.parametrize(
    "age, requests", [(timedelta(minutes=5), 2), (timedelta(0), 1)]
)
def test_a_delivery_that_lost_its_job_is_queued_again_by_the_next_webhook(
    client, runtime, pinterest, connected_shop, age, requests
):
    post_fixture(client, "orders_create.json")
    work(runtime)
    # As if the job had crashed between its commit and enqueueing the delivery.
    with runtime.db.session() as session:
        delivery = session.scalars(select(Delivery)).one()
        delivery.status = "queued"
        delivery.created_at = runtime.clock.now() - age
    # Its batch is done and the outbox empty: nothing holds it any more.

    post_fixture(client, "orders_paid.json")
    work(runtime)

    # Healed only once it is clearly orphaned; a fresh one has a job coming.
    assert len(pinterest.requests) == requests
