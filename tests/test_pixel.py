"""Beacons from Relay's Web Pixel: intake, visitor profiles, and their limits.

The envelopes are built from the Shopify pixel fixtures the way the pixel's
`buildEnvelope` (extensions/relay-pixel/src/relay.js) builds them.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from relay import keys, visitors
from tests.conftest import (
    SHOP,
    connect_pinterest,
    fixture_bytes,
    post_fixture,
    post_signed,
    work,
)
from tests.test_privacy import everything, mentions

EPIK = "dj0yJnU9RkFLRV9FUElLX0ZPUl9URVNUUyZwPTEmbj1leGFtcGxlJnQ9QUFBQUFBQUFBQUFB"
CLIENT = "5b0c7d3e-2f41-4a86-9c1e-7d2f3a4b5c6d"
CART = "Z2NwLXVzLWVhc3QxOjAxSlpYNEVYQU1QTEVDQVJUMDAwMDAwMDAx"
CHECKOUT = "7c1f2e3d4b5a69788796a5b4c3d2e1f0"
ORDER = "6123456789012"
VISITOR_IP = "203.0.113.42"
CONSENTED = {
    "analytics": True,
    "marketing": True,
    "preferences": False,
    "sale_of_data": True,
}


def envelope(name: str, **changes: Any) -> dict[str, Any]:
    event = json.loads(fixture_bytes(name))
    document = event["context"]["document"]
    built = {
        "v": 1,
        "shop": SHOP,
        "sent_at": "2026-07-14T14:21:35.012Z",
        "consent": CONSENTED,
        "click_id": {"epik": EPIK, "source": "cookie"},
        "cart_token": CART,
        "event": {
            "id": event["id"],
            "name": event["name"],
            "client_id": event["clientId"],
            "timestamp": event["timestamp"],
            "seq": event["seq"],
            "url": document["location"]["href"],
            "referrer": document["referrer"],
            "user_agent": event["context"]["navigator"]["userAgent"],
            "data": event["data"],
        },
    }
    built.update(changes)
    return built


def another_visitor(
    name: str, client_id: str, event_id: str, epik: str, **changes: Any
) -> dict[str, Any]:
    """A fixture's beacon as sent by another visitor, with their click id."""
    beacon = envelope(name, click_id={"epik": epik, "source": "url"}, **changes)
    beacon["event"].update(id=event_id, client_id=client_id)
    return beacon


def browser_data(pinterest) -> dict[str, str]:
    """The browser-side match keys of the one purchase Pinterest received."""
    (event,) = [e for e in pinterest.events if e["event_name"] == "checkout"]
    wanted = ("click_id", "client_ip_address", "client_user_agent")
    return {k: v for k, v in event["user_data"].items() if k in wanted}


def post_beacon(client, body: Any, ip: str = VISITOR_IP):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(
        "/pixel",
        data=data,
        content_type="text/plain",
        headers={"Origin": "https://www.example-shop.com"},
        environ_base={"REMOTE_ADDR": ip},
    )


def test_checkout_beacon_builds_the_visitor_s_profile_and_links(client, runtime, shop):
    response = post_beacon(client, envelope("pixel_checkout_completed.json"))

    assert (response.status_code, response.data) == (204, b"")
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    work(runtime)

    user_agent = json.loads(fixture_bytes("pixel_checkout_completed.json"))["context"][
        "navigator"
    ]["userAgent"]
    assert visitors.profile(runtime.redis, SHOP, CLIENT) == {
        "last_event": "checkout_completed",
        "last_seen": "2026-07-14T14:21:34.907000+00:00",
        "ip": VISITOR_IP,
        "user_agent": user_agent,
        "consent_marketing": "1",
        "consent_sale_of_data": "1",
        "click_id": EPIK,
        "click_id_at": "2026-07-14T14:21:34.907000+00:00",
        # The contact typed into the checkout, as digests only.
        "em": hashlib.sha256(b"jane@example.com").hexdigest(),
        "ph": hashlib.sha256(b"15555550100").hexdigest(),
    }
    for kind, value in (("cart", CART), ("checkout", CHECKOUT)):
        assert visitors.client_for(runtime.redis, SHOP, kind, value) == CLIENT
    # Order ids are guessable: only the order's own webhook links one.
    assert visitors.client_for(runtime.redis, SHOP, "order", ORDER) is None
    # The beacon itself is gone once folded in.
    assert runtime.redis.keys(keys.beacon(SHOP, "*", "*")) == []
    ttl = runtime.redis.ttl(keys.visitor(SHOP, CLIENT))
    assert 29 * 86400 < ttl <= 30 * 86400


def test_a_beacon_naming_someone_else_s_order_cannot_attach_its_click_id(
    client, runtime, pinterest, shop
):
    connect_pinterest(runtime, pinterest, SHOP)
    # The victim's visit, linked through their cart.
    post_beacon(client, envelope("pixel_page_viewed.json"))
    # A stranger claims the victim's (sequential, guessable) order id.
    hostile = another_visitor(
        "pixel_checkout_completed.json",
        "attacker-client",
        "sh-hostile-2",
        "attacker-click",
        cart_token="attackercart",
    )
    hostile["event"]["data"]["checkout"]["token"] = "attackercheckout"
    post_beacon(client, hostile, ip="198.51.100.66")
    work(runtime)

    post_signed(client, order_without_browser_data(), "victim-order")
    work(runtime)

    victim_agent = envelope("pixel_page_viewed.json")["event"]["user_agent"]
    assert browser_data(pinterest) == {
        "click_id": EPIK,
        "client_ip_address": VISITOR_IP,
        "client_user_agent": victim_agent,
    }
    assert visitors.client_for(runtime.redis, SHOP, "order", ORDER) == CLIENT


def test_preflight_is_answered_for_any_origin(client):
    response = client.options("/pixel", headers={"Origin": "https://shop.example"})

    assert response.status_code == 204
    assert {
        name: response.headers[name]
        for name in (
            "Access-Control-Allow-Origin",
            "Access-Control-Allow-Methods",
            "Access-Control-Allow-Headers",
        )
    } == {
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Allow-Methods": "POST",
        "Access-Control-Allow-Headers": "Content-Type",
    }


def test_a_repeated_beacon_is_queued_once(client, runtime, shop):
    beacon = envelope("pixel_page_viewed.json")

    assert post_beacon(client, beacon).status_code == 204
    assert post_beacon(client, beacon).status_code == 204

    assert len(runtime.queue.get_job_ids()) == 1


def _bad(change) -> dict[str, Any]:
    beacon = envelope("pixel_page_viewed.json")
    change(beacon)
    return beacon


BAD_BEACONS = {
    "not JSON": (b"{not json", 400, "body is not valid JSON"),
    "an array": (b"[1, 2]", 400, "envelope: does not match the beacon schema (type)"),
    "missing client id": (
        _bad(lambda b: b["event"].pop("client_id")),
        400,
        "event: does not match the beacon schema (required)",
    ),
    "seq as text": (
        _bad(lambda b: b["event"].update(seq="1")),
        400,
        "event/seq: does not match the beacon schema (type)",
    ),
    "unknown event": (
        _bad(lambda b: b["event"].update(name="admin_login")),
        400,
        "event/name: does not match the beacon schema (enum)",
    ),
    "client id with a key separator": (
        _bad(lambda b: b["event"].update(client_id="a b*")),
        400,
        "event/client_id: does not match the beacon schema (pattern)",
    ),
    "not a timestamp": (
        _bad(lambda b: b["event"].update(timestamp="yesterday")),
        400,
        "event/timestamp: does not match the beacon schema (pattern)",
    ),
    "another version": (
        _bad(lambda b: b.update(v=2)),
        400,
        "v: does not match the beacon schema (const)",
    ),
    "lone surrogate": (
        json.dumps(envelope("pixel_page_viewed.json"))
        .replace('"Mozilla', '"\\ud800Mozilla', 1)
        .encode(),
        400,
        "envelope holds text that is not valid Unicode",
    ),
    "client id with a trailing newline": (
        _bad(lambda b: b["event"].update(client_id="abc\n")),
        400,
        "event/client_id: does not match the beacon schema (pattern)",
    ),
    "year 1": (
        _bad(lambda b: b["event"].update(timestamp="0001-01-01T00:00:00+01:00")),
        400,
        "event/timestamp: does not match the beacon schema (pattern)",
    ),
    "nested too deeply": (
        _bad(lambda b: b["event"]["data"].update(x=json.loads("[" * 40 + "]" * 40))),
        400,
        "envelope is nested too deeply",
    ),
    "unknown shop": (
        _bad(lambda b: b.update(shop="stranger.myshopify.com")),
        404,
        "this shop does not use Relay",
    ),
    "too large": (
        _bad(lambda b: b["event"]["data"].update(padding="x" * 70_000)),
        413,
        "beacon is larger than any pixel event",
    ),
}


@pytest.mark.parametrize(
    "body, status, reason", BAD_BEACONS.values(), ids=list(BAD_BEACONS)
)
def test_bad_beacon_gets_a_clear_4xx_and_changes_nothing(
    client, runtime, shop, body, status, reason
):
    response = post_beacon(client, body)

    assert (response.status_code, response.json) == (status, {"error": reason})
    assert runtime.queue.get_job_ids() == []
    assert runtime.redis.keys("relay:*") == []


def test_a_shop_that_uninstalled_takes_no_beacons(client, runtime, shop):
    post_fixture(client, "app_uninstalled.json")
    work(runtime)
    response = post_beacon(client, envelope("pixel_page_viewed.json"))

    assert (response.status_code, response.json) == (
        404,
        {"error": "this shop does not use Relay"},
    )


def test_a_beacon_cannot_take_over_another_visitor_s_order(client, runtime, shop):
    post_beacon(client, envelope("pixel_checkout_completed.json"))
    work(runtime)

    hostile = another_visitor(
        "pixel_checkout_completed.json",
        "attacker-client",
        "sh-hostile-1",
        "attacker-click",
    )
    post_beacon(client, hostile, ip="198.51.100.66")
    work(runtime)

    for kind, value in (("cart", CART), ("checkout", CHECKOUT)):
        assert visitors.client_for(runtime.redis, SHOP, kind, value) == CLIENT
    victim = visitors.profile(runtime.redis, SHOP, CLIENT)
    assert (victim["click_id"], victim["ip"]) == (EPIK, VISITOR_IP)


def test_an_older_beacon_arriving_late_does_not_overwrite_newer_data(
    client, runtime, shop
):
    newer = envelope("pixel_checkout_completed.json")
    older = envelope("pixel_page_viewed.json")
    older["click_id"] = {"epik": "older-click", "source": "url"}
    post_beacon(client, newer)
    work(runtime)
    post_beacon(client, older, ip="198.51.100.7")
    work(runtime)

    profile = visitors.profile(runtime.redis, SHOP, CLIENT)
    assert (profile["click_id"], profile["ip"], profile["last_event"]) == (
        EPIK,
        VISITOR_IP,
        "checkout_completed",
    )


def test_customer_redact_deletes_the_visitor_linked_to_their_order(
    client, runtime, shop
):
    post_beacon(client, envelope("pixel_checkout_completed.json"))
    other = another_visitor(
        "pixel_page_viewed.json",
        "someone-else",
        "sh-other-1",
        "another-click",
        cart_token="othercart",
    )
    other["event"]["url"] = "https://www.example-shop.com/collections/all"
    post_beacon(client, other, ip="198.51.100.7")
    post_fixture(client, "orders_create.json")  # links the order to the visitor
    work(runtime)

    post_fixture(client, "customers_redact.json")
    work(runtime)

    assert mentions(everything(runtime), [CLIENT, VISITOR_IP, EPIK, CART]) == []
    assert visitors.profile(runtime.redis, SHOP, "someone-else")["ip"] == (
        "198.51.100.7"
    )


def test_shop_redact_deletes_every_visitor_of_the_shop(client, runtime, shop):
    post_beacon(client, envelope("pixel_checkout_completed.json"))
    work(runtime)

    post_fixture(client, "shop_redact.json")
    work(runtime)

    assert mentions(everything(runtime), [SHOP, CLIENT, VISITOR_IP]) == []


# Webhooks meet the pixel's profiles


def order_without_browser_data() -> dict[str, Any]:
    """The scenario's order as a server without the browser would see it."""
    order = json.loads(fixture_bytes("orders_create.json"))
    order["landing_site"] = "/products/linen-apron?utm_source=pinterest"
    order["browser_ip"] = None
    order["client_details"] = {}
    return order


def test_order_without_click_id_gets_the_pixel_s_click_id_ip_and_user_agent(
    client, runtime, pinterest, shop
):
    connect_pinterest(runtime, pinterest, SHOP)
    page = envelope("pixel_page_viewed.json", click_id={"epik": EPIK, "source": "url"})
    post_beacon(client, page)  # linked to the visitor through its cart token
    work(runtime)

    post_signed(client, order_without_browser_data(), "order-no-browser")
    work(runtime)

    assert browser_data(pinterest) == {
        "click_id": EPIK,
        "client_ip_address": VISITOR_IP,
        "client_user_agent": page["event"]["user_agent"],
    }
    assert [e["event_id"] for e in pinterest.events] == [
        page["event"]["id"],  # the page view itself, from the pixel
        ORDER,
    ]


def test_the_order_s_own_browser_data_wins_over_the_profile(
    client, runtime, pinterest, shop
):
    connect_pinterest(runtime, pinterest, SHOP)
    page = envelope(
        "pixel_page_viewed.json", click_id={"epik": "older", "source": "url"}
    )
    post_beacon(client, page, ip="198.51.100.7")
    work(runtime)

    post_fixture(client, "orders_create.json")
    work(runtime)

    order = json.loads(fixture_bytes("orders_create.json"))
    assert browser_data(pinterest) == {
        "click_id": EPIK,
        "client_ip_address": order["browser_ip"],
        "client_user_agent": order["client_details"]["user_agent"],
    }


def test_an_order_links_its_customer_and_email_to_the_visitor(client, runtime, shop):
    post_beacon(client, envelope("pixel_page_viewed.json"))
    work(runtime)
    post_fixture(client, "orders_create.json")
    work(runtime)

    email = hashlib.sha256(b"jane@example.com").hexdigest()
    for kind, value in (
        ("order", ORDER),
        ("checkout", CHECKOUT),
        ("customer", "7712345678901"),
        ("email", email),
    ):
        assert visitors.client_for(runtime.redis, SHOP, kind, value) == CLIENT


def test_an_order_with_no_visitor_is_sent_as_it_came(client, runtime, pinterest, shop):
    connect_pinterest(runtime, pinterest, SHOP)

    post_signed(client, order_without_browser_data(), "order-alone")
    work(runtime)

    assert browser_data(pinterest) == {}


def test_a_browser_clock_far_ahead_cannot_freeze_a_profile(client, runtime, shop):
    runtime.clock.set(datetime(2026, 7, 14, 14, 20, tzinfo=timezone.utc))
    ahead = envelope("pixel_page_viewed.json")
    ahead["event"]["timestamp"] = "2099-12-31T00:00:00Z"
    post_beacon(client, ahead, ip="198.51.100.7")
    work(runtime)
    runtime.clock.advance(timedelta(minutes=2))
    post_beacon(client, envelope("pixel_checkout_completed.json"))
    work(runtime)

    profile = visitors.profile(runtime.redis, SHOP, CLIENT)
    assert (profile["ip"], profile["last_event"]) == (VISITOR_IP, "checkout_completed")


def test_a_guessed_event_id_cannot_drop_the_visitor_s_own_beacon(client, runtime, shop):
    mine = envelope("pixel_checkout_completed.json")
    squatter = another_visitor(
        "pixel_checkout_completed.json",
        "squatter",
        mine["event"]["id"],
        "squatter-click",
        cart_token="squattercart",
    )
    squatter["event"]["data"] = {}
    post_beacon(client, squatter, ip="198.51.100.66")
    post_beacon(client, mine)
    work(runtime)

    assert visitors.client_for(runtime.redis, SHOP, "checkout", CHECKOUT) == CLIENT


def test_a_visitor_who_refused_is_not_used_to_enrich_their_order(
    client, runtime, pinterest, shop
):
    connect_pinterest(runtime, pinterest, SHOP)
    refused = envelope(
        "pixel_page_viewed.json",
        consent={**CONSENTED, "sale_of_data": False},
    )
    post_beacon(client, refused)
    work(runtime)

    post_signed(client, order_without_browser_data(), "order-refused")
    work(runtime)

    assert browser_data(pinterest) == {}


def test_customer_redact_reaches_a_beacon_still_waiting(client, runtime, shop):
    post_beacon(client, envelope("pixel_checkout_completed.json"))
    runtime.queue.empty()  # its job is failing and waiting for a retry

    post_fixture(client, "customers_redact.json")
    work(runtime)

    assert mentions(everything(runtime), [VISITOR_IP, EPIK, "jane@example.com"]) == []


def test_a_second_device_is_logged_without_the_customer(
    client, runtime, shop, process_log
):
    post_beacon(client, envelope("pixel_page_viewed.json"))
    other = another_visitor(
        "pixel_page_viewed.json", "second-device", "sh-2nd", "x", cart_token="cart2"
    )
    post_beacon(client, other)
    work(runtime)
    order = json.loads(fixture_bytes("orders_create.json"))
    post_signed(client, order, "first")
    order2 = dict(order, id=6123456789099, cart_token="cart2", checkout_token=None)
    post_signed(client, order2, "second")
    work(runtime)

    log = process_log()
    assert f"customer of {SHOP} already linked to another visitor" in log
    assert "7712345678901" not in log
    assert hashlib.sha256(b"jane@example.com").hexdigest() not in log


def test_the_documented_example_beacon_is_accepted(client, runtime, shop):
    response = post_beacon(client, fixture_bytes("pixel_beacon_envelope.json"))

    assert response.status_code == 204
    work(runtime)
    assert visitors.profile(runtime.redis, SHOP, CLIENT)["click_id"] == EPIK


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "192.168.0.9", "::1"])
def test_an_internal_address_is_not_kept_as_the_visitor_s_ip(
    client, runtime, shop, address
):
    post_beacon(client, envelope("pixel_page_viewed.json"), ip=address)
    work(runtime)

    assert "ip" not in visitors.profile(runtime.redis, SHOP, CLIENT)


def test_the_log_says_what_the_profile_filled_in(
    client, runtime, pinterest, shop, process_log
):
    connect_pinterest(runtime, pinterest, SHOP)
    post_beacon(client, envelope("pixel_page_viewed.json"))
    work(runtime)
    post_fixture(client, "orders_create.json")  # has its own browser data
    post_signed(client, dict(order_without_browser_data(), id=6123456789099), "o2")
    work(runtime)

    log = process_log()
    assert (
        f"purchase {ORDER} for {SHOP}: visitor found; from the profile: "
        "nothing (the event had it all)"
    ) in log
    assert (
        f"purchase 6123456789099 for {SHOP}: visitor found; from the "
        "profile: click id, IP, user agent"
    ) in log
