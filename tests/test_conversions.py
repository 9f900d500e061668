"""One conversion per action: the pixel and the webhooks of one visit meet.

Through Flask, a real Redis and real RQ workers, against the fake Pinterest.
The visit is the fixtures' story: a visitor lands from a Pinterest ad, views
the apron, adds it to the cart, adds a second apron and a mug, checks out
and pays. The pixel sees the browser side, the webhooks the store side.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from sqlalchemy import select

from relay import visitors
from relay.models import Delivery, EventRecord, Shop
from tests.conftest import (
    SHOP,
    configure_destination,
    connect_pinterest,
    fixture_bytes,
    post_fixture,
    post_signed,
    work,
)
from tests.test_end_to_end import EXPECTED_BEGIN_CHECKOUT, EXPECTED_PURCHASE
from tests.test_pixel import CART, CLIENT, EPIK, ORDER, envelope, post_beacon

PIXEL_IP = "198.51.100.23"  # not the order's, so the test tells them apart
APRON, MUG = "44012345678901", "44012345678902"
USER_AGENT = json.loads(fixture_bytes("pixel_page_viewed.json"))["context"][
    "navigator"
]["userAgent"]
BROWSER = {
    "click_id": EPIK,
    "client_ip_address": PIXEL_IP,
    "client_user_agent": USER_AGENT,
}


def digest(text: str) -> list[str]:
    return [hashlib.sha256(text.encode()).hexdigest()]


def stripped(name: str) -> dict[str, Any]:
    """An order webhook as a server-only view sees it: no browser data."""
    order = json.loads(fixture_bytes(name))
    order.update(landing_site="/products/linen-apron", browser_ip=None)
    order["client_details"] = {}
    return order


def post_webhooks(client, copy: str = "") -> None:
    """The store's side of the visit; `copy` gives each a new webhook id,
    as an order's create, paid and updated webhooks have."""
    for name in ("carts_create.json", "carts_update.json", "checkouts_create.json"):
        headers = {"X-Shopify-Webhook-Id": f"{name}{copy}"} if copy else {}
        assert post_fixture(client, name, **headers).status_code == 200
    for name, topic in (
        ("orders_create.json", "orders/create"),
        ("orders_paid.json", "orders/paid"),
    ):
        webhook_id = topic.replace("/", "-") + copy
        response = post_signed(client, stripped(name), webhook_id, topic)
        assert response.status_code == 200


def post_beacons(client) -> None:
    """The browser's side of the visit, as Relay's pixel sends it."""
    landing = envelope(
        "pixel_page_viewed.json", click_id={"epik": EPIK, "source": "url"}
    )
    for beacon in (
        landing,
        envelope("pixel_product_added_to_cart.json"),
        envelope("pixel_checkout_completed.json"),
    ):
        assert post_beacon(client, beacon, ip=PIXEL_IP).status_code == 204


def release_waiting(runtime) -> list[str]:
    """Queue every scheduled job now, as RQ's scheduler does once it is due."""
    registry = ScheduledJobRegistry(queue=runtime.queue)
    job_ids = registry.get_job_ids()
    for job_id in job_ids:
        job = Job.fetch(job_id, connection=runtime.redis)
        registry.remove(job)
        runtime.queue.enqueue_job(job)
    return job_ids


def at(hour: int, minute: int, second: int) -> int:
    """A time of the fixtures' day as Pinterest's `event_time`."""
    return int(
        datetime(2026, 7, 14, hour, minute, second, tzinfo=timezone.utc).timestamp()
    )


def by_name(pinterest, name: str) -> list[dict[str, Any]]:
    return [e for e in pinterest.events if e["event_name"] == name]


EXPECTED_ADD_TO_CARTS = [
    (f"{CART}:{APRON}:1", 1, "51.30"),
    (f"{CART}:{APRON}:2", 1, "51.30"),
    (f"{CART}:{MUG}:1", 1, "32.40"),
]


def assert_one_conversion_per_action(pinterest) -> None:
    assert pinterest.schema_errors == []

    # The purchase: once, with the order's hashed identifiers and the
    # pixel's click id, IP and user agent.
    assert by_name(pinterest, "checkout") == [
        {
            **EXPECTED_PURCHASE,
            "user_data": {**EXPECTED_PURCHASE["user_data"], **BROWSER},
        }
    ]
    assert by_name(pinterest, "initiate_checkout") == [
        {
            **EXPECTED_BEGIN_CHECKOUT,
            "user_data": {**EXPECTED_BEGIN_CHECKOUT["user_data"], **BROWSER},
        }
    ]
    # One add-to-cart per increase; the pixel's own add-to-cart adds none.
    assert (
        sorted(
            (
                e["event_id"],
                e["custom_data"]["contents"][0]["quantity"],
                e["custom_data"]["value"],
            )
            for e in by_name(pinterest, "add_to_cart")
        )
        == EXPECTED_ADD_TO_CARTS
    )
    for event in by_name(pinterest, "add_to_cart"):
        assert {k: event["user_data"][k] for k in BROWSER} == BROWSER
        assert event["user_data"]["em"] == digest("jane@example.com")
    (page,) = by_name(pinterest, "page_visit")
    assert page["event_id"] == "sh-3f6a2c1e-9D4B-4E7A-2B8C-5A1F0E9D7C31"
    assert {k: page["user_data"][k] for k in BROWSER} == BROWSER
    # Sent once the visitor was known: the checkout's contact, as digests.
    assert page["user_data"]["em"] == digest("jane@example.com")
    assert len(pinterest.events) == 6


def test_pixel_first_then_webhooks(client, runtime, pinterest, connected_shop):
    runtime.config = runtime.config.with_changes(browser_wait_seconds=60)
    post_beacons(client)
    work(runtime)
    post_webhooks(client)
    work(runtime)

    # The visitor is known: the checkout and the purchase go at once. Cart
    # additions always wait a little, for a late earlier cart state.
    assert sorted(e["event_name"] for e in pinterest.events) == [
        "checkout",
        "initiate_checkout",
        "page_visit",
    ]
    assert len(release_waiting(runtime)) == 3
    work(runtime)
    assert_one_conversion_per_action(pinterest)


def test_webhooks_first_wait_for_the_pixel(client, runtime, pinterest, connected_shop):
    runtime.config = runtime.config.with_changes(browser_wait_seconds=60)

    post_webhooks(client)
    work(runtime)
    # Everything from the webhooks waits for the visitor's browser.
    assert pinterest.events == []
    assert len(ScheduledJobRegistry(queue=runtime.queue).get_job_ids()) == 5

    post_beacons(client)
    work(runtime)
    # The pixel's checkout_completed ends the purchase's wait at once.
    assert [e["event_name"] for e in pinterest.events] == ["page_visit", "checkout"]

    assert len(release_waiting(runtime)) == 4
    work(runtime)
    assert_one_conversion_per_action(pinterest)


def test_duplicates_on_both_sides_change_nothing(
    client, runtime, pinterest, connected_shop
):
    runtime.config = runtime.config.with_changes(browser_wait_seconds=60)

    post_webhooks(client)
    post_beacons(client)
    post_webhooks(client, copy="-again")  # new webhook ids: not intake repeats
    work(runtime)
    post_beacons(client)  # a browser resending the same events
    post_webhooks(client)  # Shopify redelivering, same webhook ids
    work(runtime)
    release_waiting(runtime)
    work(runtime)

    assert_one_conversion_per_action(pinterest)


def test_a_purchase_with_no_pixel_is_sent_once_its_wait_is_over(
    client, runtime, pinterest, connected_shop
):
    runtime.config = runtime.config.with_changes(browser_wait_seconds=60)
    post_signed(client, stripped("orders_create.json"), "lonely")
    work(runtime)

    (job_id,) = ScheduledJobRegistry(queue=runtime.queue).get_job_ids()
    scheduled = ScheduledJobRegistry(queue=runtime.queue).get_scheduled_time(job_id)
    now = datetime.now(timezone.utc)
    assert timedelta(seconds=55) < scheduled - now <= timedelta(seconds=60)
    release_waiting(runtime)
    work(runtime)

    (purchase,) = pinterest.events
    assert purchase["event_id"] == ORDER
    assert "click_id" not in purchase["user_data"]


def test_the_pixel_s_order_identity_gid_ends_the_wait_too(
    client, runtime, pinterest, connected_shop
):
    runtime.config = runtime.config.with_changes(browser_wait_seconds=60)
    post_signed(client, stripped("orders_create.json"), "order")
    work(runtime)

    completed = envelope("pixel_checkout_completed.json")
    order = completed["event"]["data"]["checkout"]["order"]
    order["id"] = f"gid://shopify/OrderIdentity/{ORDER}"
    post_beacon(client, completed, ip=PIXEL_IP)
    work(runtime)

    (purchase,) = pinterest.events
    assert (purchase["event_id"], purchase["user_data"]["click_id"]) == (ORDER, EPIK)
    assert ScheduledJobRegistry(queue=runtime.queue).get_job_ids() == []


# Carts


def cart_deliveries(runtime) -> list[tuple[str, str]]:
    with runtime.db.session() as session:
        rows = session.execute(
            select(EventRecord.event_id, Delivery.status)
            .join(Delivery, Delivery.event_pk == EventRecord.id)
            .where(EventRecord.name == "add_to_cart")
            .order_by(EventRecord.event_id)
        ).all()
    return [tuple(row) for row in rows]


def test_cart_webhooks_out_of_order_and_repeated_give_one_add_to_cart_per_increase(
    client, runtime, pinterest, connected_shop
):
    runtime.config = runtime.config.with_changes(browser_wait_seconds=60)
    post_beacon(client, envelope("pixel_product_added_to_cart.json"), ip=PIXEL_IP)
    post_fixture(client, "carts_update.json")  # the later state first
    post_fixture(client, "carts_create.json")
    post_fixture(client, "carts_update.json", **{"X-Shopify-Webhook-Id": "again"})
    work(runtime)
    release_waiting(runtime)
    work(runtime)

    assert (
        sorted(
            (
                e["event_id"],
                e["custom_data"]["contents"][0]["quantity"],
                e["custom_data"]["value"],
            )
            for e in pinterest.events
        )
        == EXPECTED_ADD_TO_CARTS
    )
    assert {e["event_time"] for e in by_name(pinterest, "add_to_cart")} == {
        at(14, 12, 40),  # carts/create's updated_at
        at(14, 15, 2),  # carts/update's
    }


def test_a_late_earlier_cart_state_after_sending_adds_only_the_missing_increase(
    client, runtime, pinterest, connected_shop
):
    post_beacon(client, envelope("pixel_product_added_to_cart.json"), ip=PIXEL_IP)
    post_fixture(client, "carts_update.json")
    work(runtime)  # no wait configured: 0 → 2 aprons is sent as one increase
    post_fixture(client, "carts_create.json")
    work(runtime)

    assert sorted(e["event_id"] for e in pinterest.events) == [
        f"{CART}:{APRON}:1",
        f"{CART}:{APRON}:2",
        f"{CART}:{MUG}:1",
    ]


def test_the_pixel_s_add_to_cart_without_a_cart_makes_its_own_event(
    client, runtime, pinterest, connected_shop
):
    added = envelope("pixel_product_added_to_cart.json", cart_token=None)
    post_beacon(client, added, ip=PIXEL_IP)
    work(runtime)

    (event,) = pinterest.events
    assert event == {
        "event_name": "add_to_cart",
        "action_source": "web",
        "event_time": at(14, 12, 40),
        "event_id": "sh-8a1d4e2b-6C3F-4B9A-1E7D-0C5B3A2F9E84",
        "user_data": BROWSER,
        "custom_data": {
            "currency": "CAD",
            "value": "51.3",
            "content_ids": [APRON],
            "contents": [
                {
                    "id": APRON,
                    "quantity": 1,
                    "item_price": "51.3",
                    "item_name": "Linen Apron",
                    "item_brand": "Example Goods Co.",
                }
            ],
            "num_items": 1,
        },
        "event_source_url": added["event"]["url"],
    }


# Pixel events and who the visitor is


def test_after_an_order_the_visitor_s_page_views_carry_hashed_identity(
    client, runtime, pinterest, connected_shop
):
    post_beacon(client, envelope("pixel_page_viewed.json"), ip=PIXEL_IP)
    work(runtime)
    post_fixture(client, "orders_create.json")
    work(runtime)

    later = envelope("pixel_page_viewed.json", cart_token=None)
    later["event"].update(id="sh-after-order", timestamp="2026-07-14T14:25:00Z")
    post_beacon(client, later, ip=PIXEL_IP)
    work(runtime)

    (before, after) = by_name(pinterest, "page_visit")
    assert "em" not in before["user_data"]
    assert after["user_data"] == {
        **BROWSER,
        "em": digest("jane@example.com"),
        "ph": digest("15555550100"),
        "external_id": digest("7712345678901"),
    }


def test_a_logged_in_customer_s_page_view_carries_their_hashed_email(
    client, runtime, pinterest, connected_shop
):
    beacon = envelope(
        "pixel_page_viewed.json",
        customer={"id": "7712345678901", "email": " Jane@Example.com ", "phone": None},
    )
    post_beacon(client, beacon, ip=PIXEL_IP)
    work(runtime)

    (page,) = pinterest.events
    assert page["user_data"] == {
        **BROWSER,
        "em": digest("jane@example.com"),
        "external_id": digest("7712345678901"),
    }
    # What a browser states is used for its own events only: it links nothing.
    assert visitors.client_for(runtime.redis, SHOP, "customer", "7712345678901") is None


def test_a_pixel_event_with_no_match_key_is_skipped_and_counted(
    client, runtime, pinterest, connected_shop, cli_env
):
    from click.testing import CliRunner

    from relay.cli import cli

    no_agent = envelope("pixel_page_viewed.json", click_id=None)
    no_agent["event"]["user_agent"] = None
    post_beacon(client, no_agent, ip="10.0.0.5")  # an address no one can match
    work(runtime)

    assert pinterest.requests == []
    with runtime.db.session() as session:
        delivery = session.scalars(select(Delivery)).one()
        assert (delivery.status, delivery.reason) == ("skipped", "no match keys")
    result = CliRunner().invoke(
        cli,
        ["deliveries", "--summary", "--since", "2026-07-14T00:00:00Z"],
        env=cli_env,
        catch_exceptions=False,
    )
    assert result.output == "pinterest skipped: 1 (no match keys)\n"


def test_a_client_id_of_another_shop_is_refused_and_changes_nothing(
    client, runtime, pinterest, connected_shop
):
    other = "other-shop.myshopify.com"
    connect_pinterest(runtime, pinterest, other)
    post_beacon(client, envelope("pixel_page_viewed.json"), ip=PIXEL_IP)
    work(runtime)
    before = visitors.profile(runtime.redis, SHOP, CLIENT)

    response = post_beacon(
        client, envelope("pixel_checkout_completed.json", shop=other), ip="192.0.2.9"
    )

    assert (response.status_code, response.json) == (
        409,
        {"error": "event/client_id: belongs to a visitor of another shop"},
    )
    assert runtime.queue.get_job_ids() == []
    assert visitors.profile(runtime.redis, SHOP, CLIENT) == before
    assert visitors.profile(runtime.redis, other, CLIENT) == {}


# Consent


def set_policy(runtime, policy: str) -> None:
    with runtime.db.session() as session:
        session.scalars(
            select(Shop).where(Shop.domain == SHOP)
        ).one().consent_policy = policy


def test_strict_sends_nothing_for_an_order_without_a_consenting_session(
    client, runtime, pinterest, connected_shop, process_log
):
    set_policy(runtime, "strict")
    post_fixture(client, "orders_create.json")
    work(runtime)

    assert pinterest.requests == []
    with runtime.db.session() as session:
        delivery = session.scalars(select(Delivery)).one()
        assert (delivery.status, delivery.reason) == (
            "skipped",
            "consent: no pixel session with marketing consent",
        )
    assert (
        f"(pinterest, purchase {ORDER}, {SHOP}): skipped, "
        "consent: no pixel session with marketing consent"
    ) in process_log()


def test_strict_sends_an_order_from_a_consenting_session(
    client, runtime, pinterest, connected_shop
):
    set_policy(runtime, "strict")
    post_beacon(client, envelope("pixel_checkout_completed.json"), ip=PIXEL_IP)
    post_signed(client, stripped("orders_create.json"), "order")
    work(runtime)

    (purchase,) = pinterest.events
    assert purchase["user_data"]["client_ip_address"] == PIXEL_IP
    assert "opt_out" not in purchase


def test_standard_sends_a_sale_of_data_refusal_flagged_for_ldp(
    client, runtime, pinterest, connected_shop
):
    refused = envelope(
        "pixel_checkout_completed.json",
        consent={
            "analytics": True,
            "marketing": True,
            "preferences": None,
            "sale_of_data": False,
        },
    )
    post_beacon(client, refused, ip=PIXEL_IP)
    post_signed(client, stripped("orders_create.json"), "order")
    work(runtime)

    (purchase,) = pinterest.events
    assert purchase["opt_out"] is True
    assert purchase["custom_data"]["opt_out_type"] == "LDP"
    # What their browser told Relay is not used against the refusal.
    assert not set(BROWSER) & set(purchase["user_data"])
    assert purchase["user_data"]["em"] == digest("jane@example.com")
    assert purchase["user_data"]["st"] == digest("on")


@pytest.mark.parametrize("policy", ["standard", "strict"])
def test_a_marketing_refusal_sends_nothing_under_either_policy(
    client, runtime, pinterest, connected_shop, policy
):
    set_policy(runtime, policy)
    withdrawn = envelope(
        "pixel_checkout_completed.json",
        consent={
            "analytics": True,
            "marketing": False,
            "preferences": None,
            "sale_of_data": True,
        },
    )
    post_beacon(client, withdrawn, ip=PIXEL_IP)
    post_fixture(client, "orders_create.json")
    work(runtime)

    assert pinterest.requests == []
    with runtime.db.session() as session:
        reasons = set(session.scalars(select(Delivery.reason)))
    assert reasons == {"consent: visitor refused marketing"}


def test_the_consent_policy_is_set_from_the_cli(runtime, connected_shop, cli_env):
    from click.testing import CliRunner

    from relay.cli import cli

    runner = CliRunner()
    result = runner.invoke(
        cli, ["shops", "consent-policy", SHOP, "strict"], env=cli_env
    )
    assert result.output == (
        f"{SHOP}: consent policy strict; applies to every delivery from now on\n"
    )
    refused = runner.invoke(
        cli, ["shops", "consent-policy", SHOP, "lenient"], env=cli_env
    )
    assert refused.exit_code == 2
    assert "'lenient' is not one of 'standard', 'strict'" in refused.output
    with runtime.db.session() as session:
        shop = session.scalars(select(Shop).where(Shop.domain == SHOP)).one()
        assert shop.consent_policy == "strict"


def test_customer_redact_deletes_the_visitor_s_page_views_too(
    client, runtime, pinterest, connected_shop
):
    post_beacons(client)
    post_webhooks(client)
    work(runtime)

    post_fixture(client, "customers_redact.json")
    work(runtime)

    with runtime.db.session() as session:
        assert session.scalars(select(EventRecord)).all() == []
    assert visitors.profile(runtime.redis, SHOP, CLIENT) == {}


def test_event_types_turned_off_are_skipped(client, runtime, pinterest, connected_shop):
    configure_destination(runtime, "pinterest", {"events": "checkout,add_to_cart"})
    post_beacon(client, envelope("pixel_page_viewed.json"), ip=PIXEL_IP)
    work(runtime)

    assert pinterest.requests == []
    with runtime.db.session() as session:
        delivery = session.scalars(select(Delivery)).one()
        assert (delivery.status, delivery.reason) == (
            "skipped",
            "event type turned off",
        )


def test_an_unknown_event_type_is_refused_with_the_reason(runtime, cli_env):
    from click.testing import CliRunner

    from relay.cli import cli

    result = CliRunner().invoke(
        cli,
        ["destinations", "set", "pinterest", "--shop", SHOP]
        + ["--set", "events=checkout,purchase"],
        env=cli_env,
    )

    assert result.exit_code == 1
    assert result.output == (
        "Error: events: 'checkout,purchase' is not valid (Pinterest event names, "
        "comma-separated; leave out any a browser Pinterest Tag already sends "
        "with other event ids (docs/pinterest.md))\n"
    )
